-- A batch of queued items no other worker holds; the row locks last until this transaction ends,
-- so a crashed worker's batch becomes claimable again the moment its connection drops.
select q.item_id, i.title, i.body, i.category, i.tags, i.attributes
from pyembed.item_queue q
join pyembed.items i using (item_id)
where q.not_before <= now()
order by q.not_before, q.item_id
limit %(batch)s
for update of q skip locked
