-- The vectors of a batch's items, each once, by item id, packed (vector_send: int16 dims,
-- int16 unused, then the big-endian float4 values) for numpy (pyembed_db/user_vectors.py).
select count(*),
       string_agg(int8send(ie.item_id), '' order by ie.item_id),
       string_agg(vector_send(ie.embedding), '' order by ie.item_id)
from pyembed.item_embeddings ie
where ie.model_id = %(model_id)s and ie.item_id = any (%(items)s::bigint[])
