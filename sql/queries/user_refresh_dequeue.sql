-- Refresh one claimed user's vectors, then dequeue it (one statement: the refresh runs first).
with refreshed as (
    select pyembed.refresh_user_set(array[%(user_id)s::bigint], model_id => %(model_id)s) as n
)
delete from pyembed.user_queue
where user_id = %(user_id)s and (select n from refreshed) is not null
