-- Embedding helpers: resolve a model, check query vectors, read item vectors, queue re-embeds,
-- and report coverage per model. Idempotent: re-applied by every migration that changes them.

-- The model to use: p_model_id when given (must exist), else the active one (PE001 if none).
create or replace function pyembed.resolve_model(p_model_id integer default null)
returns integer
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
begin
    if p_model_id is null then
        return pyembed.active_model_id();
    end if;
    if not exists (select from pyembed.embedding_models where model_id = p_model_id) then
        raise exception 'unknown model_id %', p_model_id using errcode = 'PE002';
    end if;
    return p_model_id;
end
$$;

-- Checks that a query vector can be compared with the model's item vectors and returns the
-- resolved model id. A wrong dimension (e.g. a 768-d query against the 384-d active model) is a
-- clear PE011 error instead of pgvector's generic "different vector dimensions".
-- Example: select pyembed.check_query_vector(array_fill(0.1, array[384])::vector);
create or replace function pyembed.check_query_vector(query vector, p_model_id integer default null)
returns integer
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    resolved integer := pyembed.resolve_model(p_model_id);
    expected integer;
    label text;
begin
    select dimensions, name || ':' || version into expected, label
    from pyembed.embedding_models where model_id = resolved;
    if query is null then
        raise exception 'query vector is null' using errcode = 'PE011';
    end if;
    if vector_dims(query) <> expected then
        raise exception 'query vector has % dimensions, model % (id %) has %',
                        vector_dims(query), label, resolved, expected
            using errcode = 'PE011',
                  hint = 'embed the query with the same model as the items';
    end if;
    return resolved;
end
$$;

-- The stored vector of one item for a model (default: the active one). PE004 when the item does
-- not exist or has no vector yet (still queued, or skipped: see pyembed.item_embedding_skips).
-- Example: select pyembed.item_vector(1) <=> pyembed.item_vector(2);
create or replace function pyembed.item_vector(p_item_id bigint, p_model_id integer default null)
returns vector
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    resolved integer := pyembed.resolve_model(p_model_id);
    found_vector vector;
    skip_reason text;
begin
    select embedding into found_vector from pyembed.item_embeddings
    where model_id = resolved and item_id = p_item_id;
    if found_vector is not null then
        return found_vector;
    end if;
    if not exists (select from pyembed.items where item_id = p_item_id) then
        raise exception 'unknown item_id %', p_item_id using errcode = 'PE004';
    end if;
    select reason into skip_reason from pyembed.item_embedding_skips
    where model_id = resolved and item_id = p_item_id;
    raise exception 'item % has no vector for model %', p_item_id, resolved
        using errcode = 'PE004',
              hint = coalesce('it was skipped: ' || skip_reason,
                              'it is not embedded yet: run `pyembed-db embed` or the worker');
end
$$;

-- Queues items for (re-)embedding: the given ids, or every item when null. Returns how many were
-- queued and wakes the workers. Items whose text did not change are only checked, not embedded.
-- Example: select pyembed.enqueue_items(array[1, 2, 3]);
create or replace function pyembed.enqueue_items(p_item_ids bigint[] default null)
returns bigint
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    queued bigint;
begin
    insert into pyembed.item_queue (item_id)
    select item_id from pyembed.items
    where p_item_ids is null or item_id = any (p_item_ids)
    on conflict (item_id) do update set enqueued_at = now(), not_before = now(), attempts = 0;
    get diagnostics queued = row_count;
    if queued > 0 then
        perform pg_notify('pyembed_work', 'items');
    end if;
    return queued;
end
$$;

-- Per model: how many items have a vector, were skipped, and how many items are still queued.
-- Example: select * from pyembed.embedding_coverage();
create or replace function pyembed.embedding_coverage()
returns table (model_id integer, label text, status text, dimensions integer, items bigint,
               vectors bigint, skipped bigint, queued bigint)
language sql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select m.model_id, m.name || ':' || m.version, m.status, m.dimensions,
           (select count(*) from pyembed.items),
           (select count(*) from pyembed.item_embeddings e where e.model_id = m.model_id),
           (select count(*) from pyembed.item_embedding_skips s where s.model_id = m.model_id),
           (select count(*) from pyembed.item_queue)
    from pyembed.embedding_models m
    order by m.model_id
$$;

-- Users with events on items that just got their first vector in the active text model: a
-- refresh that ran before the vector existed left those items out, so they are queued again.
-- (An upsert that replaces a vector is an UPDATE and queues nobody.)
create or replace function pyembed.item_embeddings_queue_users() returns trigger
language plpgsql security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    active integer := pyembed.active_model_id();
begin
    insert into pyembed.user_queue (user_id)
    select distinct e.user_id
    from new_vectors n
    join pyembed.events e on e.item_id = n.item_id
    where n.model_id = active
    on conflict (user_id) do update set enqueued_at = pyembed.user_queue.enqueued_at;
    return null;
end
$$;

create or replace trigger item_embeddings_queue_users
    after insert on pyembed.item_embeddings
    referencing new table as new_vectors
    for each statement execute function pyembed.item_embeddings_queue_users();
