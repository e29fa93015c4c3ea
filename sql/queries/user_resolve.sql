-- A user's internal id from the application's external id (the session's tenant only).
select user_id from pyembed.users where external_id = %(external_id)s
