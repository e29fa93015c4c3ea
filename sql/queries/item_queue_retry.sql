-- A failed item stays queued, with the error and an exponential back-off (capped at 1 hour);
-- returns its attempts so far.
update pyembed.item_queue
set attempts = attempts + 1,
    last_error = left(%(error)s, 2000),
    not_before = now() + least(interval '1 hour', interval '1 second' * power(2, attempts))
where item_id = any(%(item_ids)s)
returning attempts
