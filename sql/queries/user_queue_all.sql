-- Queue every user who has events (refresh-users --all).
select pyembed.queue_users()
