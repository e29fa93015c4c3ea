-- Held-out events for the evaluation: every event at or after the cutoff.
create temporary table pyembed_eval_heldout on commit drop as
select event_id, user_id, item_id, event_type, value
from pyembed.events
where occurred_at >= %(cutoff)s
