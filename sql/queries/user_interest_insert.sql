-- One interest vector of a user (the batch's old interests were deleted just before).
insert into pyembed.user_embeddings
    (model_id, user_id, kind, slot, embedding, weight, event_count, event_watermark)
values (%(model_id)s, %(user_id)s, 'interest', %(slot)s, %(embedding)s, %(weight)s,
        %(event_count)s, %(watermark)s)
on conflict (model_id, user_id, kind, slot) do update
    set embedding = excluded.embedding, weight = excluded.weight,
        event_count = excluded.event_count, event_watermark = excluded.event_watermark,
        refreshed_at = now()
