insert into pyembed.events (user_id, item_id, event_type, value, occurred_at)
select u.user_id, i.item_id, s.event_type, s.value, coalesce(s.occurred_at, now())
from stage_events s
join pyembed.users u on u.external_id = s.user_ext
    and u.tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), '')
join pyembed.items i on i.external_id = s.item_ext
    and i.tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), '')
order by s.row_no
