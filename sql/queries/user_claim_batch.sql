-- Claim and dequeue up to `batch` ready users (pyembed.claim_users); the worker refreshes them
-- before it commits.
select user_id from pyembed.claim_users(%(since)s::timestamptz, %(batch)s, %(model_id)s)
