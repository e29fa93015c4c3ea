-- pyembed_db.search.search_text: hybrid full-text + vector search fused by reciprocal rank.
select item_id, external_id, title, score, text_rank, vector_rank, distance
from pyembed.search_text(%(text)s, %(query)s::vector, %(k)s, %(filters)s::jsonb,
                         %(exclude_user)s::bigint, %(model_id)s::integer, %(rrf_k)s)
