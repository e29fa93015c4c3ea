-- A user's most recent events with the item they were about (recommend's human output).
select e.occurred_at, e.event_type, e.value, i.item_id, i.external_id, i.title
from pyembed.events e
join pyembed.items i on i.item_id = e.item_id
where e.user_id = %(user_id)s
order by e.occurred_at desc, e.event_id desc
limit %(limit)s
