-- A user whose refresh failed stays queued, with the error and an exponential back-off (capped
-- at 1 hour): the worker goes on with the others.
update pyembed.user_queue
set attempts = attempts + 1,
    last_error = left(%(error)s, 2000),
    not_before = now() + least(interval '1 hour', interval '1 second' * power(2, attempts))
where user_id = %(user_id)s
