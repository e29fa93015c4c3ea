-- Items each user has training events on (excluded from the baseline when excluding seen).
select user_id, item_id from pyembed.events where user_id = any(%(users)s::bigint[])
