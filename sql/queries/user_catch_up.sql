-- Users refreshed in SQL alone (pyembed.refresh_users from pg_cron) whose interest vectors or
-- behavior vector are older than their long-term vector: the worker recomputes those.
select lt.user_id
from pyembed.user_embeddings lt
where lt.model_id = %(model_id)s and lt.kind = 'long_term'
  and (exists (select from pyembed.user_embeddings i
               where i.model_id = lt.model_id and i.user_id = lt.user_id
                 and i.kind = 'interest' and i.event_watermark < lt.event_watermark)
       or exists (select from pyembed.user_embeddings b
                  where b.model_id = %(behavior_model)s and b.user_id = lt.user_id
                    and b.kind = 'long_term' and b.event_watermark < lt.event_watermark))
order by lt.user_id
limit %(batch)s
