-- Interest settings: at most k_max interests, one per min_items positively weighted items.
select pyembed.setting('interest_k_max', '4')::integer as k_max,
       pyembed.setting('interest_min_items', '10')::integer as min_items
