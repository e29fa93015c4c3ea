-- Interest settings: at most k_max interests, one per min_items positively weighted items.
select pyembed.setting_number('interest_k_max', 4, 1, 64)::integer as k_max,
       pyembed.setting_number('interest_min_items', 10, 1, 1000000)::integer as min_items
