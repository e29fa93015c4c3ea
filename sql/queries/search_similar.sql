-- pyembed_db.search.search_similar: "more like this" item.
select item_id, external_id, title, distance
from pyembed.search_similar(%(item_id)s, %(k)s, %(filters)s::jsonb, %(exclude_user)s::bigint,
                            %(model_id)s::integer)
