-- No scored method reads the users' text vectors: drop them (inside the evaluation's
-- rolled-back transaction) rather than leave vectors built from held-out events.
delete from pyembed.user_embeddings where model_id = %(model_id)s
