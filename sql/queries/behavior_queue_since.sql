-- Users with events newer than a model's training: queued, so fold-in catches them up.
insert into pyembed.user_queue (user_id)
select distinct e.user_id from pyembed.events e where e.event_id > %(watermark)s
on conflict (user_id) do update set enqueued_at = pyembed.user_queue.enqueued_at
