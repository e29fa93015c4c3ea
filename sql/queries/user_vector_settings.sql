-- The user-vector settings, as pyembed.user_item_weights and pyembed.refresh_user_set read
-- them (sql/functions/30_users.sql): half-life and short-term window in seconds, gamma; and
-- the interest settings: at most k_max interests, one per min_items positively weighted items.
select extract(epoch from pyembed.setting_interval('half_life', '90 days'))::float8,
       extract(epoch from pyembed.setting_interval('short_term_window', '30 days'))::float8,
       pyembed.setting_number('negative_weight', 0.5, 0, 10),
       pyembed.setting_number('interest_k_max', 4, 1, 64)::integer,
       pyembed.setting_number('interest_min_items', 10, 1, 1000000)::integer
