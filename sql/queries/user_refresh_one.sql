-- Refresh one user's long-term and short-term vectors now; returns vectors written.
select pyembed.refresh_user(%(user_id)s, model_id => %(model_id)s::integer)
