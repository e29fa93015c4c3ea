-- A batch of queued items no other worker holds; the row locks last until this transaction ends,
-- so a crashed worker's batch becomes claimable again the moment its connection drops. The texts
-- are read by a second statement (item_texts.sql): this one's snapshot may predate an update
-- that committed while it waited for a lock, and that update's trigger found the row unlocked.
select q.item_id
from pyembed.item_queue q
where q.not_before <= now()
order by q.not_before, q.item_id
limit %(batch)s
for update skip locked
