-- Core functions and triggers. Idempotent: re-applied by every migration that changes them.

-- A pyembed.* interval setting (or the fallback), or PE012 naming the setting when its value is
-- not an interval (rather than a bare cast error from deep inside a refresh).
create or replace function pyembed.setting_interval(name text, fallback text) returns interval
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    raw text := pyembed.setting(name, fallback);
begin
    return raw::interval;
exception when invalid_datetime_format or datetime_field_overflow or interval_field_overflow
               or invalid_parameter_value then
    raise exception 'setting pyembed.% must be an interval such as ''90 days'', got %',
        name, quote_literal(raw) using errcode = 'PE012';
end
$$;

-- A pyembed.* numeric setting (or the fallback) within low..high, or PE012 naming the setting.
create or replace function pyembed.setting_number(
    name text, fallback double precision, low double precision, high double precision)
returns double precision
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    raw text := nullif(current_setting('pyembed.' || name, true), '');
    value double precision;
begin
    if raw !~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$' then
        raise exception 'setting pyembed.% must be a number, got %', name, quote_literal(raw)
            using errcode = 'PE012';
    end if;
    value := coalesce(raw::double precision, fallback);
    if value < low or value > high then
        raise exception 'setting pyembed.% must be between % and %, got %', name, low, high,
            quote_literal(raw) using errcode = 'PE012';
    end if;
    return value;
end
$$;

-- The active model of a kind ('text': the model item text is embedded with and searches use;
-- 'behavior': the collaborative model recommendations use); raises when there is none.
create or replace function pyembed.active_model_id(kind text default 'text') returns integer
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    found_id integer;
begin
    select m.model_id into found_id from pyembed.embedding_models m
    where m.status = 'active' and m.kind = active_model_id.kind;
    if found_id is null then
        raise exception 'no active % model', case kind when 'text' then 'embedding' else kind end
            using errcode = 'PE001',
                  hint = case kind when 'text'
                              then 'register one with `pyembed-db model register` and activate it'
                              else 'train one with `pyembed-db train`' end;
    end if;
    return found_id;
end
$$;

-- Make a model the active one of its kind, atomically: the previous active model of that kind
-- steps down in the same transaction, the model's HNSW index is created if missing (behavior
-- models: and its ef_search calibrated, pyembed.calibrate_search), and (text models) every user
-- is queued so their vectors follow the new model. Refuses (PE005) a model
-- with fewer item vectors than the current one unless `force`: switching would make part of
-- the catalog unsearchable (re-embed first). `build_index => false` leaves the index (and the
-- calibration) to a later activate_model or ensure_model_index call: searches of the model scan
-- exactly until then. The offline evaluation uses it: its transaction is rolled back, and its
-- methods may read no behavior vector (the HNSW build of 100k items takes minutes).
-- Returns the model id.
--   select pyembed.activate_model(3);
create or replace function pyembed.activate_model(p_model_id integer, force boolean default false,
                                                  build_index boolean default true)
returns integer
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    target record;
    current_id integer;
    target_vectors bigint;
    current_vectors bigint;
begin
    -- Serializes activations without blocking readers of the table.
    lock table pyembed.embedding_models in share row exclusive mode;
    select * into target from pyembed.embedding_models where model_id = p_model_id;
    if not found then
        raise exception 'unknown model_id %', p_model_id using errcode = 'PE002';
    end if;
    select model_id into current_id from pyembed.embedding_models
    where status = 'active' and kind = target.kind;
    if current_id = p_model_id then
        perform pyembed.ensure_model_index(p_model_id) where build_index is not false;
        perform pyembed.calibrate_search(p_model_id)
        where build_index is not false
          and target.kind = 'behavior' and not target.config ? 'ef_search';
        return p_model_id;
    end if;
    if current_id is not null and not force then
        select count(*) into target_vectors from pyembed.item_embeddings
        where model_id = p_model_id;
        select count(*) into current_vectors from pyembed.item_embeddings
        where model_id = current_id;
        if target_vectors < current_vectors then
            raise exception 'model % has % item vectors, the active model % has %: run '
                            '`pyembed-db reembed` first (or force the switch)',
                p_model_id, target_vectors, current_id, current_vectors
                using errcode = 'PE005';
        end if;
    end if;
    update pyembed.embedding_models set status = 'registered'
    where status = 'active' and kind = target.kind;
    update pyembed.embedding_models set status = 'active', activated_at = now()
    where model_id = p_model_id;
    perform pyembed.ensure_model_index(p_model_id) where build_index is not false;
    perform pyembed.calibrate_search(p_model_id)
    where build_index is not false
      and target.kind = 'behavior' and not target.config ? 'ef_search';
    if target.kind = 'text' then
        -- Every user with events: their vectors must be computed in the new space.
        insert into pyembed.user_queue (user_id)
        select distinct e.user_id from pyembed.events e
        on conflict (user_id) do update set enqueued_at = pyembed.user_queue.enqueued_at;
        perform pg_notify('pyembed_work', 'users');
    end if;
    return p_model_id;
end
$$;

-- Sets the status of a model that is not the active one: 'syncing' (text models: the worker
-- embeds every changed item with it too, see reembed_model), 'registered' (kept, not synced) or
-- 'retired'. 'active' is refused (PE012: activate_model switches atomically), and so is changing
-- the active model (PE005: activate another one instead). Returns the new status.
--   select pyembed.set_model_status(3, 'registered');
create or replace function pyembed.set_model_status(p_model_id integer, status text)
returns text
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    target record;
begin
    if status is null or status not in ('registered', 'syncing', 'retired') then
        raise exception 'status must be registered, syncing or retired, got %',
                        coalesce(status, 'null')
            using errcode = 'PE012',
                  hint = case when status = 'active'
                              then 'use pyembed.activate_model to switch models'
                              else 'activate_model makes a model active' end;
    end if;
    -- The lock activate_model takes: a model cannot become active while its status changes.
    lock table pyembed.embedding_models in share row exclusive mode;
    select m.model_id, m.kind, m.status into target from pyembed.embedding_models m
    where m.model_id = p_model_id;
    if not found then
        raise exception 'unknown model_id %', p_model_id using errcode = 'PE002';
    end if;
    if target.status = 'active' then
        raise exception 'model % is the active % model', p_model_id, target.kind
            using errcode = 'PE005', hint = 'activate another model instead';
    end if;
    if status = 'syncing' and target.kind <> 'text' then
        raise exception 'only text models are kept in sync; model % is a % model',
                        p_model_id, target.kind using errcode = 'PE012';
    end if;
    update pyembed.embedding_models m set status = set_model_status.status
    where m.model_id = p_model_id;
    return status;
end
$$;

-- Re-embeds every item with a text model, leaving the active model (and searches) untouched:
-- marks it 'syncing' unless it is the active one and queues every item; the worker (or
-- `pyembed-db embed`) fills its vectors, items whose text did not change are only checked.
-- Returns the items queued. Progress: pyembed.embedding_coverage(). Then activate_model.
--   select pyembed.reembed_model(3);
create or replace function pyembed.reembed_model(p_model_id integer)
returns bigint
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    lock table pyembed.embedding_models in share row exclusive mode;
    if not exists (select from pyembed.embedding_models m
                   where m.model_id = p_model_id and m.status = 'active') then
        perform pyembed.set_model_status(p_model_id, 'syncing');
    end if;
    return pyembed.enqueue_items();
end
$$;

-- Creates a per-model HNSW index on item_embeddings (a partial expression index, because the
-- column is dimension-less) and records its storage in embedding_models.config->>'index_storage',
-- which pyembed.search reads to write the matching ORDER BY expression. `storage`:
--   'vector'  float32 (index item_embeddings_hnsw_m<id>)
--   'halfvec' float16, half the index memory (..._m<id>_halfvec; search re-ranks exactly)
--   'bit'     binary quantization, 1/32 of the memory, Hamming distance (..._m<id>_bit; search
--             over-fetches and re-ranks with the full vectors)
-- NULL keeps the model's current storage ('vector' when none was chosen). The graph is built with
-- m = 32, ef_construction = 200 (settings pyembed.index_hnsw_m / index_hnsw_ef_construction):
-- pgvector's 16 / 64 left text-embedding queries far from the catalog at recall@10 0.6 whatever
-- ef_search (bench/filtered_search_real.py, docs/search.md *Recall*). An existing index is kept.
--
-- SECURITY DEFINER: creating an index (and the model's search function) takes the owner of
-- pyembed.item_embeddings, and pyembed_worker activates the models it trains. Safe because
-- every identifier is derived from integers and whitelisted words (below) and pg_temp comes
-- last in the search path; executable by pyembed_worker only (sql/grants.sql).
create or replace function pyembed.ensure_model_index(p_model_id integer, storage text default null)
returns text
language plpgsql volatile security definer
set search_path to pg_catalog, public, pg_temp
as $$
declare
    m record;
    chosen text;
    index_name text;
    expression text;
    opclass text;
    hnsw_m integer := pyembed.setting_number('index_hnsw_m', 32, 2, 100);
    construction integer := pyembed.setting_number('index_hnsw_ef_construction', 200, 4, 1000);
    graph_bytes double precision;
    callers_memory text := current_setting('maintenance_work_mem');
begin
    select * into m from pyembed.embedding_models where model_id = p_model_id;
    if not found then
        raise exception 'unknown model_id %', p_model_id using errcode = 'PE002';
    end if;
    -- pgvector builds HNSW many times faster while the graph fits in maintenance_work_mem
    -- (64 MB by default: 20k vectors of 384 dimensions at m 32). Raised for this build to what
    -- the graph needs (vectors + neighbour lists, ~4 bytes a dimension + 64 bytes per unit of m
    -- per row), up to pyembed.index_build_memory (default 1GB); never lowered, and the
    -- caller's value is back after the build (a failed build rolls the setting back with it).
    -- Not a SET clause: `set ... from current` would enter with the value of migration time.
    graph_bytes := (select count(*) from pyembed.item_embeddings ie
                    where ie.model_id = p_model_id)
                   * (4.0 * m.dimensions + 64 * hnsw_m + 256);
    perform set_config('maintenance_work_mem', ceil(greatest(
        pg_size_bytes(current_setting('maintenance_work_mem')),
        least(graph_bytes, pg_size_bytes(coalesce(
            nullif(current_setting('pyembed.index_build_memory', true), ''), '1GB'))))
        / 1024)::bigint || 'kB', true);
    chosen := coalesce(storage, m.config->>'index_storage', 'vector');
    if chosen not in ('vector', 'halfvec', 'bit') then
        raise exception 'storage must be vector, halfvec or bit, got %', chosen
            using errcode = '22023';
    end if;
    index_name := pyembed.model_index_name(p_model_id, chosen);
    -- %s of integers and whitelisted words only: nothing here comes from free text.
    if chosen = 'bit' then
        expression := format('(binary_quantize(embedding)::bit(%s))', m.dimensions);
        opclass := 'bit_hamming_ops';
    else
        expression := format('(embedding::%s(%s))', chosen, m.dimensions);
        opclass := chosen || '_' || case m.distance when 'cosine' then 'cosine'
                                                    when 'l2' then 'l2' else 'ip' end || '_ops';
    end if;
    execute format(
        'create index if not exists %I on pyembed.item_embeddings using hnsw '
        '(%s %s) with (m = %s, ef_construction = %s) where model_id = %s',
        index_name, expression, opclass, hnsw_m, greatest(construction, 2 * hnsw_m), p_model_id);
    perform set_config('maintenance_work_mem', callers_memory, true);
    if m.config->>'index_storage' is distinct from chosen then
        update pyembed.embedding_models
        set config = config || jsonb_build_object('index_storage', chosen)
        where model_id = p_model_id;
    end if;
    perform pyembed.create_search_function(p_model_id);
    return index_name;
end
$$;

-- Name of a model's HNSW index for a storage ('vector' keeps the historical name). No SET
-- clause and only immutable built-ins, so search_plan's expressions inline it for free.
create or replace function pyembed.model_index_name(p_model_id integer, storage text)
returns text
language sql immutable security invoker
as $$
    select 'item_embeddings_hnsw_m' || p_model_id::text
           || case when storage = 'vector' then '' else '_' || storage end
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

-- The columns of pyembed.items an item's embedded text is made from, in the default template
-- order: the one place they are listed. The trigger below and the worker (embed/item_text.py
-- reads them through item_text_source) both follow it.
--   select pyembed.item_text_columns();
create or replace function pyembed.item_text_columns() returns text[]
language sql immutable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select array['title', 'body', 'category', 'tags', 'attributes']
$$;

-- The text columns of one item (a row of pyembed.items as jsonb) as one jsonb object: what the
-- worker renders with the model's template, and what an update must change to re-embed.
--   select pyembed.item_text_source(to_jsonb(i)) from pyembed.items i limit 1;
create or replace function pyembed.item_text_source(item jsonb) returns jsonb
language sql immutable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select coalesce(jsonb_object_agg(c, coalesce(item -> c, 'null')), '{}')
    from unnest(pyembed.item_text_columns()) c
$$;

-- Only changes to the columns that make up the embedded text (item_text_columns) enqueue an
-- item; a price or created_at update does not. The row comparison is written from that list
-- once per statement (%I of constant column names): per row it costs what the hand-written
-- (n.title, ...) is distinct from (o.title, ...) did, where item_text_source(to_jsonb(row))
-- made a 100k-row update twice as slow (bench/item_text_trigger.py).
create or replace function pyembed.items_enqueue_updated() returns trigger
language plpgsql security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    queued bigint;
begin
    execute format(
        'insert into pyembed.item_queue (item_id) '
        'select n.item_id from new_items n join old_items o using (item_id) '
        'where (%s) is distinct from (%s) '
        'on conflict (item_id) do update '
        'set enqueued_at = now(), not_before = now(), attempts = 0',
        (select string_agg(format('n.%I', c), ', ') from unnest(pyembed.item_text_columns()) c),
        (select string_agg(format('o.%I', c), ', ') from unnest(pyembed.item_text_columns()) c));
    get diagnostics queued = row_count;
    if queued > 0 then
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
    -- `do update`, not `do nothing`: when a worker holds the user's queue row (refreshing it
    -- right now, from events that do not include these), the update waits for that worker to
    -- delete the row and commit, then queues the user again. `do nothing` would not wait, and
    -- these events would never reach the user's vectors.
    insert into pyembed.user_queue (user_id)
    select distinct user_id from new_events
    on conflict (user_id) do update set enqueued_at = pyembed.user_queue.enqueued_at;
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

-- Tenants bound to roles (table pyembed.tenant_roles, revision 0006). A bound role sees and
-- writes only its tenant's rows whatever it sets pyembed.tenant_id to. bind_tenant also makes
-- the tenant the role's default setting, so the tenant_id column defaults fill it in. For
-- administrators only (it alters a role): no pyembed role may execute it.
--   select pyembed.bind_tenant('shop_acme', 'acme');
create or replace function pyembed.bind_tenant(role_name name, tenant_id text)
returns void
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
begin
    if tenant_id is null or tenant_id = '' then
        raise exception 'tenant_id must be a non-empty text' using errcode = 'PE012';
    end if;
    if not exists (select from pg_roles r where r.rolname = bind_tenant.role_name) then
        raise exception 'unknown role %', role_name using errcode = 'PE012';
    end if;
    insert into pyembed.tenant_roles as b (role_name, tenant_id)
    values (bind_tenant.role_name, bind_tenant.tenant_id)
    on conflict on constraint tenant_roles_pkey do update set tenant_id = excluded.tenant_id;
    execute format('alter role %I in database %I set pyembed.tenant_id = %L',
                   role_name, current_database(), tenant_id);
    -- Bound what one careless query of the role can cost (a hybrid query once ran minutes),
    -- unless the administrator already set the role's own limits. A client can still raise
    -- its own statement_timeout: this bounds mistakes, not a hostile client.
    perform pyembed.default_role_setting(role_name, 'statement_timeout', '60s'),
            pyembed.default_role_setting(role_name, 'idle_in_transaction_session_timeout',
                                         '5min');
end
$$;

-- Set `setting` for `role_name` in this database unless the role already has its own value
-- (in this database or for every database). Returns whether it set it.
create or replace function pyembed.default_role_setting(role_name name, setting text,
                                                        value text)
returns boolean
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    if exists (select from pg_db_role_setting s
               join pg_roles r on r.oid = s.setrole
               cross join unnest(s.setconfig) as c(entry)
               where r.rolname = role_name
                 and s.setdatabase in (0, (select oid from pg_database
                                           where datname = current_database()))
                 and c.entry like setting || '=%') then
        return false;
    end if;
    execute format('alter role %I in database %I set %I = %L',
                   role_name, current_database(), setting, value);
    return true;
end
$$;

create or replace function pyembed.unbind_tenant(role_name name)
returns boolean
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
begin
    delete from pyembed.tenant_roles b where b.role_name = unbind_tenant.role_name;
    if not found then
        return false;
    end if;
    execute format('alter role %I in database %I reset pyembed.tenant_id',
                   role_name, current_database());
    return true;
end
$$;

-- The tenant this session reads and writes: its role's binding, else the session setting
-- (null: untenanted rows only). The policies hold the same rule inline.
create or replace function pyembed.current_tenant()
returns text
language sql stable security invoker
as $$
    select coalesce(
        (select b.tenant_id from pyembed.tenant_roles b where b.role_name = current_user),
        nullif(pg_catalog.current_setting('pyembed.tenant_id', true), ''))
$$;

-- External ids to internal ids, in the session's tenant. Unknown ids are errors (PE003 users,
-- PE004 items), so a typo never silently recommends for nobody:
--   select * from pyembed.recommend(pyembed.user_id('196'), 10,
--                                   positive => pyembed.item_ids(array['50', '181']));
create or replace function pyembed.user_id(external_id text) returns bigint
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    found_id bigint;
begin
    select u.user_id into found_id from pyembed.users u
    where u.external_id = user_id.external_id
      and coalesce(u.tenant_id, '') = coalesce(pyembed.current_tenant(), '');
    if found_id is null then
        raise exception 'unknown user %', quote_literal(external_id) using errcode = 'PE003';
    end if;
    return found_id;
end
$$;

-- Internal ids of `external_ids`, in their order (duplicates kept).
create or replace function pyembed.item_ids(external_ids text[]) returns bigint[]
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    ids bigint[];
    unknown boolean;
    missing text;
begin
    select array_agg(i.item_id order by x.o), bool_or(i.item_id is null),
           (array_agg(x.id order by x.o) filter (where i.item_id is null))[1]
    into ids, unknown, missing
    from unnest(external_ids) with ordinality as x(id, o)
    left join pyembed.items i
           on i.external_id = x.id
          and coalesce(i.tenant_id, '') = coalesce(pyembed.current_tenant(), '');
    if unknown then
        raise exception 'unknown item %', coalesce(quote_literal(missing), 'null')
            using errcode = 'PE004';
    end if;
    return coalesce(ids, '{}');
end
$$;
