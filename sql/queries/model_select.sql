select model_id, name, version, dimensions, distance, checksum, source, config, status,
       created_at, activated_at, kind,
       (select count(*) from pyembed.item_embeddings e where e.model_id = m.model_id) as vectors
from pyembed.embedding_models m
