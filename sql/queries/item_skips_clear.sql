delete from pyembed.item_embedding_skips
where model_id = %(model_id)s and item_id = any(%(item_ids)s)
