select coalesce(array_agg(distinct user_id), '{}') from pyembed.events
