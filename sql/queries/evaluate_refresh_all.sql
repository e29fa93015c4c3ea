-- Recompute the long-term and short-term vectors of every user from the training events.
select pyembed.refresh_user_set(%(users)s::bigint[], model_id => %(model_id)s)
