-- Recommendations for many users in one round trip.
select u.user_id, r.item_id
from unnest(%(users)s::bigint[]) as u(user_id)
cross join lateral pyembed.recommend(u.user_id, %(k)s, exclude_seen => %(exclude_seen)s,
                                     model_id => %(model_id)s, vectors => %(vectors)s,
                                     popularity => %(popularity)s::real,
                                     method => %(method)s::text) r
