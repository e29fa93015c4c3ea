-- One ready queued user no other worker holds (the per-user path after a failed batch).
select user_id
from pyembed.user_queue
where not_before <= now()
order by enqueued_at, user_id
limit 1
for update skip locked
