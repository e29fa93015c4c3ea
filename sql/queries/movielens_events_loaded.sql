-- Whether the rating events of one ML-100K user are already there.
select exists (
    select from pyembed.events e join pyembed.users u using (user_id)
    where e.event_type = 'rating' and u.external_id = %(user)s
)
