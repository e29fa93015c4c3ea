insert into pyembed.items as i
    (external_id, title, body, category, tags, price, attributes, created_at)
select external_id, title, body, category, tags, price, attributes::jsonb,
       coalesce(created_at, now())
from stage_items
order by row_no
on conflict (external_id, (coalesce(tenant_id, ''))) do update
    set title = excluded.title, body = excluded.body, category = excluded.category,
        tags = excluded.tags, price = excluded.price, attributes = excluded.attributes
    where (i.title, i.body, i.category, i.tags, i.price, i.attributes)
          is distinct from
          (excluded.title, excluded.body, excluded.category, excluded.tags, excluded.price,
           excluded.attributes)
