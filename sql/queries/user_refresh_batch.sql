-- Claim, refresh and dequeue one batch of queued users (pyembed_db.users); returns their ids.
select user_id
from pyembed.refresh_user_batch(%(since)s::timestamptz, %(batch)s, model_id => %(model_id)s)
