insert into pyembed.user_embeddings
    (model_id, user_id, kind, slot, embedding, weight, event_count, event_watermark, refreshed_at)
values (%(model_id)s, %(user_id)s, 'long_term', 0, %(embedding)s, 1, %(events)s,
        %(watermark)s, now())
on conflict (model_id, user_id, kind, slot) do update
    set embedding = excluded.embedding, event_count = excluded.event_count,
        event_watermark = excluded.event_watermark, refreshed_at = now()
