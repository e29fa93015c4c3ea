insert into pyembed.item_queue (item_id)
select item_id from pyembed.items
on conflict (item_id) do update set not_before = now(), attempts = 0
