-- The old active model steps down before the new one is marked active (one active at a time).
update pyembed.embedding_models set status = 'registered'
where status = 'active' and model_id <> %(model_id)s
