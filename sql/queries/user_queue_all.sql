-- Every user with events: after a model switch their vectors must be computed in the new space.
insert into pyembed.user_queue (user_id)
select distinct e.user_id from pyembed.events e
on conflict (user_id) do update set enqueued_at = pyembed.user_queue.enqueued_at
