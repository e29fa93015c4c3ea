-- References of events to users, items and event types, checked once per statement.
--
-- Why not foreign keys: a foreign key checks every inserted event with its own query, three per
-- event (~4 us each), which was more than half of a bulk load's merge. These triggers check a
-- whole statement's events with one semi-join per referenced table. They keep what the foreign
-- keys (sql/schema/0005_load.up.sql) guaranteed:
--   - an event names an existing user, item and event type, else SQLSTATE 23503 with the
--     message and detail the foreign key gave;
--   - the referenced rows are locked FOR KEY SHARE until the inserting transaction ends, so a
--     concurrent delete of the user or item waits, then cascades to the new events (its
--     trigger's statement runs on a fresh snapshot in READ COMMITTED);
--   - deleting users or items deletes their events (ON DELETE CASCADE), deleting or renaming
--     an event type still in use fails (NO ACTION), TRUNCATE of a referenced table alone fails,
--     and user_id / item_id never change (they are identities).
-- One difference: users, items and event types are deleted only in READ COMMITTED. A
-- REPEATABLE READ deleter could not see events a concurrent load committed after its snapshot
-- (a foreign key re-checks them on a newer snapshot; a statement cannot), so it is refused.
--
-- SECURITY DEFINER like the foreign keys' checks (which run as the table owner): the checks
-- see every tenant's rows and may lock event types; tenancy itself is the `same_tenant` policy.

create or replace function pyembed.events_check_references() returns trigger
language plpgsql volatile security definer
set search_path to pg_catalog, pg_temp
as $$
declare
    user_ids bigint[] := array(select distinct n.user_id from new_events n);
    item_ids bigint[] := array(select distinct n.item_id from new_events n);
    types text[] := array(select distinct n.event_type from new_events n);
    locked bigint;
    missing text;
begin
    -- Each referenced row is locked (a concurrent delete then waits for this transaction),
    -- and a key is missing when fewer rows were locked than keys named. In READ COMMITTED the
    -- lookup of the missing key runs on a new snapshot, after a delete we waited for committed.
    select count(*) into locked from (select from pyembed.users u
                                      where u.user_id = any (user_ids) for key share of u) l;
    if locked < cardinality(user_ids) then
        select x::text into missing from unnest(user_ids) x
        where not exists (select from pyembed.users u where u.user_id = x) limit 1;
        perform pyembed.references_missing('user_id', missing, 'users');
    end if;
    select count(*) into locked from (select from pyembed.items i
                                      where i.item_id = any (item_ids) for key share of i) l;
    if locked < cardinality(item_ids) then
        select x::text into missing from unnest(item_ids) x
        where not exists (select from pyembed.items i where i.item_id = x) limit 1;
        perform pyembed.references_missing('item_id', missing, 'items');
    end if;
    select count(*) into locked from (select from pyembed.event_types t
                                      where t.event_type = any (types) for key share of t) l;
    if locked < cardinality(types) then
        select x into missing from unnest(types) x
        where not exists (select from pyembed.event_types t where t.event_type = x) limit 1;
        perform pyembed.references_missing('event_type', missing, 'event_types');
    end if;
    return null;
end
$$;

-- The foreign key's error: SQLSTATE 23503, its message, detail and constraint name.
create or replace function pyembed.references_missing(col text, key text, target text)
returns void
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    raise exception using
        message = format('insert or update on table "events" violates foreign key constraint '
                         '"events_%s_fkey"', col),
        errcode = 'foreign_key_violation', schema = 'pyembed', table = 'events',
        constraint = format('events_%s_fkey', col),
        detail = format('Key (%s)=(%s) is not present in table "%s".', col, key, target);
end
$$;

-- Deletes of referenced rows happen in READ COMMITTED only (see the top of this file).
create or replace function pyembed.references_require_read_committed(target text)
returns void
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'delete % in a READ COMMITTED transaction', target
            using errcode = 'feature_not_supported',
                  hint = 'events reference them and are checked per statement; at '
                         || current_setting('transaction_isolation')
                         || ' a concurrent load''s events could outlive them';
    end if;
end
$$;

create or replace function pyembed.users_delete_events() returns trigger
language plpgsql volatile security definer
set search_path to pg_catalog, pg_temp
as $$
begin
    perform pyembed.references_require_read_committed('users');
    delete from pyembed.events e using old_users o where e.user_id = o.user_id;
    return null;
end
$$;

create or replace function pyembed.items_delete_events() returns trigger
language plpgsql volatile security definer
set search_path to pg_catalog, pg_temp
as $$
begin
    perform pyembed.references_require_read_committed('items');
    delete from pyembed.events e using old_items o where e.item_id = o.item_id;
    return null;
end
$$;

-- An event type still used by events cannot be deleted or renamed (NO ACTION).
create or replace function pyembed.event_types_refuse_used(gone text[]) returns void
language plpgsql volatile security definer
set search_path to pg_catalog, pg_temp
as $$
declare
    used text;
begin
    if cardinality(gone) = 0 then
        return;
    end if;
    perform pyembed.references_require_read_committed('event types');
    select e.event_type into used from pyembed.events e where e.event_type = any (gone) limit 1;
    if found then
        raise exception using
            message = 'update or delete on table "event_types" violates foreign key constraint '
                      '"events_event_type_fkey" on table "events"',
            errcode = 'foreign_key_violation', schema = 'pyembed', table = 'event_types',
            constraint = 'events_event_type_fkey',
            detail = format('Key (event_type)=(%s) is still referenced from table "events".',
                            used);
    end if;
end
$$;

create or replace function pyembed.event_types_check_deleted() returns trigger
language plpgsql volatile security definer
set search_path to pg_catalog, pg_temp
as $$
begin
    perform pyembed.event_types_refuse_used(array(select o.event_type from old_types o));
    return null;
end
$$;

create or replace function pyembed.event_types_check_updated() returns trigger
language plpgsql volatile security definer
set search_path to pg_catalog, pg_temp
as $$
begin
    perform pyembed.event_types_refuse_used(array(
        select o.event_type from old_types o
        except select n.event_type from new_types n));
    return null;
end
$$;

-- TRUNCATE of a referenced table must truncate events in the same statement (as with a
-- foreign key): checked after the statement, when every listed table is empty.
create or replace function pyembed.references_check_truncate() returns trigger
language plpgsql volatile security definer
set search_path to pg_catalog, pg_temp
as $$
begin
    if exists (select from pyembed.events) then
        raise exception 'cannot truncate a table referenced in a foreign key constraint'
            using errcode = 'feature_not_supported',
                  detail = format('Table "events" references "%s".', tg_table_name),
                  hint = 'Truncate table "events" at the same time, or use TRUNCATE ... CASCADE '
                         'and list pyembed.events.';
    end if;
    return null;
end
$$;

-- user_id and item_id are identities; only `SET user_id = DEFAULT` could change one.
create or replace function pyembed.references_keep_id() returns trigger
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    raise exception 'cannot change %.% (events reference it)', tg_table_name, tg_argv[0]
        using errcode = 'foreign_key_violation';
end
$$;

create or replace trigger events_check_references_inserted
    after insert on pyembed.events
    referencing new table as new_events
    for each statement execute function pyembed.events_check_references();
create or replace trigger events_check_references_updated
    after update on pyembed.events
    referencing new table as new_events
    for each statement execute function pyembed.events_check_references();

create or replace trigger users_delete_events
    after delete on pyembed.users
    referencing old table as old_users
    for each statement execute function pyembed.users_delete_events();
create or replace trigger items_delete_events
    after delete on pyembed.items
    referencing old table as old_items
    for each statement execute function pyembed.items_delete_events();

create or replace trigger event_types_check_deleted
    after delete on pyembed.event_types
    referencing old table as old_types
    for each statement execute function pyembed.event_types_check_deleted();
create or replace trigger event_types_check_updated
    after update on pyembed.event_types
    referencing old table as old_types new table as new_types
    for each statement execute function pyembed.event_types_check_updated();

create or replace trigger users_check_truncate
    after truncate on pyembed.users
    for each statement execute function pyembed.references_check_truncate();
create or replace trigger items_check_truncate
    after truncate on pyembed.items
    for each statement execute function pyembed.references_check_truncate();
create or replace trigger event_types_check_truncate
    after truncate on pyembed.event_types
    for each statement execute function pyembed.references_check_truncate();

create or replace trigger users_keep_id
    before update of user_id on pyembed.users
    for each row when (new.user_id is distinct from old.user_id)
    execute function pyembed.references_keep_id('user_id');
create or replace trigger items_keep_id
    before update of item_id on pyembed.items
    for each row when (new.item_id is distinct from old.item_id)
    execute function pyembed.references_keep_id('item_id');
