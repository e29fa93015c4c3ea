select m.model_id, m.name, m.version, m.dimensions, m.distance, m.status,
       (select count(*) from pyembed.item_embeddings e where e.model_id = m.model_id) as vectors
from pyembed.embedding_models m
order by m.model_id
