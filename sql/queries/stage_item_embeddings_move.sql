-- The staged item vectors of a new behavior model into pyembed.item_embeddings.
insert into pyembed.item_embeddings (model_id, item_id, embedding, content_hash)
select s.model_id, s.item_id, s.embedding, s.content_hash
from pg_temp.stage_item_embeddings s
