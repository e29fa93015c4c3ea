select item_id, content_hash from pyembed.item_embeddings
where model_id = %(model_id)s and item_id = any (%(items)s::bigint[])
