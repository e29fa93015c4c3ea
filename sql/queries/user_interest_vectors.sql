-- The vectors of the items the batch's users liked, each once (fetched in binary), by item id.
select item_id, embedding from pyembed.item_embeddings
where model_id = %(model_id)s and item_id = any(%(items)s)
order by item_id
