-- The popularity cache with the half-life a validation chose (null seconds: no decay), whatever
-- the active behavior model says (the offline evaluation serves a choice whose model it does
-- not store). Recomputed only when the half-life or the newest event changed.
select pyembed.refresh_popularity(
    half_life => make_interval(secs => coalesce(%(seconds)s::float8, 0)))
