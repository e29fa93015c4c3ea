-- Recompute the cached item popularity when events changed (cold-start recommendations).
select pyembed.refresh_popularity(min_interval => %(min_interval)s, force => %(force)s)
