-- Every item's vector in a text model (for the cold-item map).
select item_id, embedding from pyembed.item_embeddings where model_id = %(model_id)s
order by item_id
