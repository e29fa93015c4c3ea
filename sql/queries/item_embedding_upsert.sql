insert into pyembed.item_embeddings (model_id, item_id, embedding, content_hash)
values (%(model_id)s, %(item_id)s, %(embedding)s, %(content_hash)s)
on conflict (model_id, item_id) do update
    set embedding = excluded.embedding, content_hash = excluded.content_hash,
        embedded_at = now()
