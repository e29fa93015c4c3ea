-- pyembed_db.search.search: one call of pyembed.search (see sql/functions/20_search.sql).
select item_id, external_id, title, distance
from pyembed.search(%(query)s, %(k)s, %(filters)s::jsonb, %(exclude_user)s::bigint,
                    %(model_id)s::integer)
