update pyembed.embedding_models set status = 'active', activated_at = now()
where model_id = %(model_id)s
