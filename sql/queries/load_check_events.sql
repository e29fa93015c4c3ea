-- The first staged event whose user, item or event type does not exist (run when the merge
-- inserted fewer events than were staged).
select s.row_no,
       case when u.user_id is null then 'unknown user ' || quote_literal(s.user_ext)
            when i.item_id is null then 'unknown item ' || quote_literal(s.item_ext)
            else 'unknown event type ' || quote_literal(s.event_type) end as problem
from stage_events s
left join pyembed.users u on u.external_id = s.user_ext
    and coalesce(u.tenant_id, '') = coalesce(current_setting('pyembed.tenant_id', true), '')
left join pyembed.items i on i.external_id = s.item_ext
    and coalesce(i.tenant_id, '') = coalesce(current_setting('pyembed.tenant_id', true), '')
left join pyembed.event_types t on t.event_type = s.event_type
where u.user_id is null or i.item_id is null or t.event_type is null
order by s.row_no
limit 1
