-- The tables an events merge joins whose statistics are missing or stale (the table grew by more
-- than a fifth since its last ANALYZE or VACUUM) and that this role may analyze. Planned on
-- stale statistics (e.g. right after `load users` / `load items`, before autovacuum ran), the
-- merge can pick a nested loop that rescans the staged events once per user: quadratic.
-- Sizes come from pg_relation_size, not from the statistics collector, which lags behind.
select c.oid::regclass::text
from pg_class c
where c.oid in ('pyembed.users'::regclass, 'pyembed.items'::regclass)
  and (c.reltuples < 0
       or pg_relation_size(c.oid) / current_setting('block_size')::int > 1.2 * c.relpages + 8)
  and (pg_has_role(c.relowner, 'USAGE')
       or case when current_setting('server_version_num')::int >= 170000
               then has_table_privilege(c.oid, 'MAINTAIN') else false end)
order by 1
