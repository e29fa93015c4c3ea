-- Core functions and triggers. Idempotent: re-applied by every migration that changes them.

-- The active embedding model; raises when there is none.
create or replace function pyembed.active_model_id() returns integer
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    found_id integer;
begin
    select model_id into found_id from pyembed.embedding_models where status = 'active';
    if found_id is null then
        raise exception 'no active embedding model'
            using errcode = 'PE001',
                  hint = 'register one with `pyembed-db model register` and activate it';
    end if;
    return found_id;
end
$$;

-- Creates the per-model HNSW index on item_embeddings (a partial expression index, because the
-- column is dimension-less). `storage` is 'vector' (float32) or 'halfvec' (half the memory).
create or replace function pyembed.ensure_model_index(p_model_id integer, storage text default 'vector')
returns text
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    m record;
    index_name text := format('item_embeddings_hnsw_m%s', p_model_id);
    opclass text;
begin
    select * into m from pyembed.embedding_models where model_id = p_model_id;
    if not found then
        raise exception 'unknown model_id %', p_model_id using errcode = 'PE002';
    end if;
    if storage not in ('vector', 'halfvec') then
        raise exception 'storage must be vector or halfvec, got %', storage using errcode = '22023';
    end if;
    opclass := storage || '_' || case m.distance when 'cosine' then 'cosine'
                                                 when 'l2' then 'l2' else 'ip' end || '_ops';
    -- %s of integers and whitelisted words only: nothing here comes from free text.
    execute format(
        'create index if not exists %I on pyembed.item_embeddings using hnsw '
        '((embedding::%s(%s)) %s) where model_id = %s',
        index_name, storage, m.dimensions, opclass, p_model_id);
    return index_name;
end
$$;

create or replace function pyembed.items_touch() returns trigger
language plpgsql security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    new.updated_at := now();
    return new;
end
$$;

create or replace function pyembed.items_enqueue_inserted() returns trigger
language plpgsql security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    insert into pyembed.item_queue (item_id)
    select item_id from new_items
    on conflict (item_id) do update set enqueued_at = now(), not_before = now(), attempts = 0;
    if found then
        perform pg_notify('pyembed_work', 'items');
    end if;
    return null;
end
$$;

-- Only changes to the columns that make up the embedded text enqueue an item; a price or
-- created_at update does not.
create or replace function pyembed.items_enqueue_updated() returns trigger
language plpgsql security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    insert into pyembed.item_queue (item_id)
    select n.item_id
    from new_items n join old_items o using (item_id)
    where (n.title, n.body, n.category, n.tags, n.attributes)
          is distinct from (o.title, o.body, o.category, o.tags, o.attributes)
    on conflict (item_id) do update set enqueued_at = now(), not_before = now(), attempts = 0;
    if found then
        perform pg_notify('pyembed_work', 'items');
    end if;
    return null;
end
$$;

create or replace function pyembed.events_enqueue_users() returns trigger
language plpgsql security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    insert into pyembed.user_queue (user_id)
    select distinct user_id from new_events
    on conflict (user_id) do nothing;
    if found then
        perform pg_notify('pyembed_work', 'users');
    end if;
    return null;
end
$$;

create or replace trigger items_touch
    before update on pyembed.items
    for each row execute function pyembed.items_touch();
create or replace trigger items_enqueue_inserted
    after insert on pyembed.items
    referencing new table as new_items
    for each statement execute function pyembed.items_enqueue_inserted();
create or replace trigger items_enqueue_updated
    after update on pyembed.items
    referencing old table as old_items new table as new_items
    for each statement execute function pyembed.items_enqueue_updated();
create or replace trigger events_enqueue_users
    after insert on pyembed.events
    referencing new table as new_events
    for each statement execute function pyembed.events_enqueue_users();

-- Counts for `pyembed-db status`.
create or replace function pyembed.status()
returns table (name text, value bigint)
language sql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select 'users', count(*) from pyembed.users
    union all select 'items', count(*) from pyembed.items
    union all select 'events', count(*) from pyembed.events
    union all select 'embedding_models', count(*) from pyembed.embedding_models
    union all select 'item_embeddings', count(*) from pyembed.item_embeddings
    union all select 'item_embedding_skips', count(*) from pyembed.item_embedding_skips
    union all select 'user_embeddings', count(*) from pyembed.user_embeddings
    union all select 'item_queue', count(*) from pyembed.item_queue
    union all select 'user_queue', count(*) from pyembed.user_queue
$$;
