-- The popularity cache at the half-life a new behavior model chose (activated just before, so
-- pyembed.popularity_half_life() gives it too). Recomputed only when the half-life or the
-- newest event changed.
select pyembed.refresh_popularity(half_life => %(half_life)s::interval)
