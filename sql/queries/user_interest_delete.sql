-- The interest vectors of a batch, before they are recomputed (a user may now have fewer).
delete from pyembed.user_embeddings
where model_id = %(model_id)s and user_id = any (%(users)s) and kind = 'interest'
