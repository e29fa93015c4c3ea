insert into pyembed.users as u (external_id, attributes, created_at)
select external_id, attributes::jsonb, coalesce(created_at, now())
from stage_users
order by row_no
on conflict (external_id, (coalesce(tenant_id, ''))) do update
    set attributes = excluded.attributes
    where u.attributes is distinct from excluded.attributes
