-- Events as behavior training reads them (optionally only some users'), oldest first.
select e.user_id, e.item_id, t.weight, e.event_type = 'rating', coalesce(e.value, 3),
       extract(epoch from e.occurred_at)::float8, e.event_id
from pyembed.events e
join pyembed.event_types t on t.event_type = e.event_type
where %(users)s::bigint[] is null or e.user_id = any (%(users)s::bigint[])
order by e.event_id
