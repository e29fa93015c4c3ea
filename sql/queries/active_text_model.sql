-- The active text model's id, or no row.
select model_id from pyembed.embedding_models where status = 'active' and kind = 'text'
