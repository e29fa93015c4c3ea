-- pyembed_db.recommend.recommend: one call of the SQL function with named arguments.
select item_id, external_id, title, score, source
from pyembed.recommend(
    %(user_id)s, %(k)s, %(filters)s::jsonb, exclude_seen => %(exclude_seen)s,
    diversity => %(diversity)s::real, positive => %(positive)s::bigint[],
    negative => %(negative)s::bigint[], model_id => %(model_id)s::integer,
    vectors => %(vectors)s, popularity => %(popularity)s::real, method => %(method)s::text)
