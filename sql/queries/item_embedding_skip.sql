-- An item that cannot be embedded loses its stale vector and gets its reason recorded.
with dropped as (
    delete from pyembed.item_embeddings where model_id = %(model_id)s and item_id = %(item_id)s
)
insert into pyembed.item_embedding_skips (model_id, item_id, reason, content_hash)
values (%(model_id)s, %(item_id)s, %(reason)s, %(content_hash)s)
on conflict (model_id, item_id) do update
    set reason = excluded.reason, content_hash = excluded.content_hash, skipped_at = now()
