-- The staged user vectors into pyembed.user_embeddings. The batch's old rows were deleted in
-- this transaction; a conflict means a concurrent refresh of the same user committed first,
-- and the newer computation (this one) wins.
insert into pyembed.user_embeddings
    (model_id, user_id, kind, slot, embedding, weight, event_count, event_watermark)
select s.model_id, s.user_id, s.kind, s.slot, s.embedding, s.weight, s.event_count,
       s.event_watermark
from pg_temp.stage_user_embeddings s
on conflict (model_id, user_id, kind, slot) do update
    set embedding = excluded.embedding, weight = excluded.weight,
        event_count = excluded.event_count, event_watermark = excluded.event_watermark,
        refreshed_at = now()
