-- Held-out events for the evaluation: the last %(holdout)s events of every user who has more.
create temporary table pyembed_eval_heldout on commit drop as
select event_id, user_id, item_id, event_type, value
from (select e.*, row_number() over (partition by e.user_id
                                     order by e.occurred_at desc, e.event_id desc) as recent,
             count(*) over (partition by e.user_id) as total
      from pyembed.events e) ranked
where recent <= %(holdout)s and total > %(holdout)s
