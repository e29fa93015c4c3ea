-- Settings of one load, local to its transaction. A backend checks every second that its client
-- is still connected: a killed loader's backend then stops within seconds instead of finishing
-- (or waiting for a lock for) a merge nobody will commit.
select set_config('client_connection_check_interval', '1s', true)
