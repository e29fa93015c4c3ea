-- The text columns (pyembed.item_text_columns) of claimed items, read after the claim (see
-- item_queue_claim.sql).
select i.item_id, pyembed.item_text_source(to_jsonb(i)) as source
from pyembed.items i
where i.item_id = any(%(item_ids)s)
order by i.item_id
