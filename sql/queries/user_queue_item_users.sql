-- Users with events on items that just got their first vector in the active model: a refresh
-- that ran before the vector existed left those items out.
insert into pyembed.user_queue (user_id)
select distinct e.user_id from pyembed.events e where e.item_id = any(%(item_ids)s)
on conflict (user_id) do update set enqueued_at = pyembed.user_queue.enqueued_at
