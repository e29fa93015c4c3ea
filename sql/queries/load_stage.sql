-- Staging tables for one bulk load; dropped at commit. Every column is loosely typed so that
-- the Python side can report bad values by row number before anything is merged.
-- Dropped first: two loads may share one transaction.
drop table if exists pg_temp.stage_users, pg_temp.stage_items, pg_temp.stage_events;
create temp table stage_users (
    row_no       bigint not null,
    external_id  text not null,
    attributes   text not null,  -- JSON text, checked by the loader; cast in the merge
    created_at   timestamptz
) on commit drop;

create temp table stage_items (
    row_no       bigint not null,
    external_id  text not null,
    title        text,
    body         text,
    category     text,
    tags         text[] not null,
    price        numeric,
    attributes   text not null,  -- JSON text, checked by the loader; cast in the merge
    created_at   timestamptz
) on commit drop;

create temp table stage_events (
    row_no       bigint not null,
    user_ext     text not null,
    item_ext     text not null,
    event_type   text not null,
    value        real,
    occurred_at  timestamptz
) on commit drop;
