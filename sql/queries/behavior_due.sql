-- Whether the worker should train a behavior model now: the first one once the events reach
-- pyembed.train_min_events (default 10000), then again after pyembed.retrain_events (default
-- 10000) events newer than the active model's training. Counts stop at the threshold.
select case
    when bm.model_id is null then
        (select count(*) from (select from pyembed.events limit t.first_n) e) >= t.first_n
    else
        (select count(*) from (select from pyembed.events e
                               where e.event_id > bm.event_watermark limit t.again_n) e)
            >= t.again_n
    end
from (select pyembed.setting_number('train_min_events', 10000, 1, 1e12)::bigint as first_n,
             pyembed.setting_number('retrain_events', 10000, 1, 1e12)::bigint as again_n) t
left join lateral (
    select b.model_id, b.event_watermark from pyembed.behavior_models b
    join pyembed.embedding_models em on em.model_id = b.model_id
    where em.status = 'active' and em.kind = 'behavior'
) bm on true
