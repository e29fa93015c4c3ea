-- A user's internal id from the application's external id (pyembed.user_id: PE003 if unknown).
select pyembed.user_id(%(external_id)s)
