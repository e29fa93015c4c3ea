-- The embedded columns of claimed items, read after the claim (see item_queue_claim.sql).
select item_id, title, body, category, tags, attributes
from pyembed.items
where item_id = any(%(item_ids)s)
order by item_id
