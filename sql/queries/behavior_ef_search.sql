-- The ef_search calibrated for a behavior model when it was activated (null: not calibrated).
select (em.config->>'ef_search')::integer, (em.config->>'ef_search_recall')::float8
from pyembed.embedding_models em
where em.model_id = %(model_id)s
