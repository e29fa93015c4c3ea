-- Settings of one load, local to its transaction:
-- - a backend checks every second that its client is still connected: a killed loader's
--   backend then stops within seconds instead of finishing (or waiting for a lock for) a merge
--   nobody will commit;
-- - memory for the merge's hash joins (the catalog's ids) and its sort by row number, which
--   would otherwise spill to disk at a few hundred thousand events.
select set_config('client_connection_check_interval', '1s', true),
       set_config('work_mem', '128MB', true)
