-- A batch's user vectors of the kinds about to be recomputed (a user may now get fewer).
delete from pyembed.user_embeddings
where model_id = %(model_id)s and user_id = any (%(users)s::bigint[])
  and kind = any (%(kinds)s::text[])
