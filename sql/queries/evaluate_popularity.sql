-- The popularity cache from the training events only (rolled back with the rest), at the
-- half-life the validation chose (null: pyembed.popularity_half_life()).
select pyembed.refresh_popularity(half_life => %(half_life)s::interval, force => true)
