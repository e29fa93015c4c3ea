-- Relevant held-out items: positive net weight (for 1-5 ratings: rating >= 4).
select h.user_id, array_agg(h.item_id order by h.item_id)
from (select h.user_id, h.item_id
      from pyembed_eval_heldout h
      join pyembed.event_types t on t.event_type = h.event_type
      group by h.user_id, h.item_id
      having sum(pyembed.rule_weight(t.weight, h.event_type, h.value)) > 0) h
group by h.user_id
order by h.user_id
