delete from pyembed.user_embeddings
where model_id = %(model_id)s and user_id = any (%(users)s::bigint[])
