-- Events reference users, items and event types through statement-level checks instead of
-- foreign keys (sql/functions/05_references.sql: same guarantees, one set-based pass per
-- statement instead of three queries per event row; the triggers are created there because
-- they call functions, which belong to the function files).
alter table pyembed.events
    drop constraint events_user_id_fkey,
    drop constraint events_item_id_fkey,
    drop constraint events_event_type_fkey;
