-- Filtered nearest-neighbour search: strategy selection, search, more-like-this, hybrid
-- (the filters themselves: 15_filters.sql).
-- Idempotent. The dynamic SQL here is built with format() from whitelisted words and integers
-- read from embedding_models; every user value reaches it only as a bound parameter ($1...).

-- A numeric setting `pyembed.<name>` (SET / SET LOCAL / ALTER DATABASE ... SET), or `fallback`.
create or replace function pyembed.search_setting(name text, fallback double precision)
returns double precision
language sql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select pyembed.setting_number(name, fallback, '-Infinity', 'Infinity')
$$;

-- The argument checks every search and recommendation shares (PE012 / PE011):
--   k               1..1000, the documented range of every search and recommendation
--   query           when `dimensions` is given: not null, `dimensions` long, finite, and under
--                   cosine distance not (near) zero: a zero vector has no direction, and its
--                   cosine distance to anything is NaN
-- `model` names the model in the messages. Recommendations call it with k alone.
--   perform pyembed.check_search_args(k);
--   perform pyembed.check_search_args(k, query, m.dimensions, m.distance, '1 (minilm)');
create or replace function pyembed.check_search_args(
    k integer, query vector default null, dimensions integer default null,
    distance text default null, model text default null)
returns void
language plpgsql immutable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    norm double precision;
begin
    if k is null or k < 1 or k > 1000 then
        raise exception 'k must be between 1 and 1000, got %', k using errcode = 'PE012';
    end if;
    if dimensions is null then
        return;
    end if;
    if query is null then
        raise exception 'query vector is null' using errcode = 'PE011';
    end if;
    if vector_dims(query) <> dimensions then
        raise exception 'query has % dimensions, model % has %', vector_dims(query),
            coalesce(model, '?'), dimensions using errcode = 'PE011';
    end if;
    -- pgvector's vector type already rejects NaN and Infinity; the norm (accumulated in double
    -- precision) is finite exactly when every component is, so this guard costs one pass.
    norm := vector_norm(query);
    if norm in ('NaN'::double precision, 'Infinity'::double precision) then
        raise exception 'query vector contains NaN or Infinity' using errcode = 'PE011';
    end if;
    if distance = 'cosine' and norm < 1e-6 then
        raise exception 'query vector is zero (norm %): cosine distance needs a direction',
            norm using errcode = 'PE011',
            hint = 'a text that embeds to nothing, or a vector that was never filled in';
    end if;
end
$$;

-- The unfiltered ef_search of a model: config->'ef_search' when calibrated
-- (pyembed.calibrate_search), else 600. Inlined (no SET clause, built-ins only); a hand-edited
-- config that is not a number counts as uncalibrated.
create or replace function pyembed.model_ef_search(config jsonb) returns integer
language sql immutable security invoker
as $$
    select case when jsonb_typeof(config->'ef_search') = 'number'
                then least(1000, greatest(10, round((config->>'ef_search')::numeric)))::integer
                else 600 end
$$;

-- Estimated milliseconds of each strategy for `passing` rows out of `total` (see
-- docs/search.md, *Strategies*). Constants fitted on the benchmark machine by
-- bench/filtered_search_real.py (2 cores, warm shared buffers; an index of m 32: a visited
-- index tuple costs about as much as 14 filtered rows read and compared exactly, whatever the
-- dimension, which the graph's memory accesses dominate); each can be overridden with a setting, e.g. `set pyembed.search_cost_exact_row =
-- 0.004` (ms), after running the benchmark on your hardware.
--   exact_ms   exact_fixed + passing * exact_row
--   hnsw_ms    hnsw_fixed + tuples * hnsw_tuple, tuples = max(ef_search, fetch / selectivity):
--              the index entries an iterative scan returns before `fetch` of them pass a filter
--              independent of the query
--   break_even the tuples at which the HNSW path would cost as much as the exact one
--              (reported; the scan itself is bounded for recall, see search_plan)
--   first_batch_ms  the index scan's first batch (ef_search tuples), its cheapest outcome
drop function if exists pyembed.search_costs(double precision, double precision, integer, integer,
                                             integer);
create or replace function pyembed.search_costs(
    passing double precision, total double precision, fetch_n integer, ef integer,
    dimensions integer,
    out exact_ms double precision, out hnsw_ms double precision,
    out hnsw_tuples double precision, out break_even double precision,
    out first_batch_ms double precision)
language plpgsql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    exact_fixed double precision := pyembed.search_setting('search_cost_exact_fixed', 0.5);
    exact_row double precision := pyembed.search_setting('search_cost_exact_row',
        0.005 + 0.000003 * dimensions);
    hnsw_fixed double precision := pyembed.search_setting('search_cost_hnsw_fixed', 0.5);
    hnsw_tuple double precision := pyembed.search_setting('search_cost_hnsw_tuple', 0.07);
    s double precision := least(1, greatest(passing, 1) / greatest(total, 1));
begin
    exact_ms := exact_fixed + passing * exact_row;
    hnsw_tuples := least(greatest(ef, fetch_n / s), 1e9);
    hnsw_ms := hnsw_fixed + hnsw_tuples * hnsw_tuple;
    break_even := greatest(0, (exact_ms - hnsw_fixed) / hnsw_tuple);
    first_batch_ms := hnsw_fixed + ef * hnsw_tuple;
end
$$;

-- How pyembed.search will run this query, without running it (jsonb):
--   function        the per-index function that runs an unfiltered HNSW search with a cached
--                   plan (see create_search_function), when there is one
--   strategy        'exact' (scan the rows passing the filter, sort by exact distance) or
--                   'hnsw' (HNSW index with iterative scan, candidates re-sorted exactly)
--   reason          why, with the two estimated costs compared (ms)
--   costs           {"exact": ms, "hnsw": ms, "hnsw_tuples": n, "break_even_tuples": n}
--   estimated_rows  planner estimate of the rows passing the filter; counted_rows: a bounded
--                   count (stopping at count_limit rows), run when the two costs are within
--                   4x of each other (or the table was never analyzed)
--   selectivity     passing rows / items; fetch (candidates the HNSW path collects before
--                   re-sorting: over-fetched under a filter), ef_search, max_scan_tuples (the
--                   break-even point: past it the exact scan takes over)
--   storage, index  the HNSW index used and its storage (vector, halfvec, bit)
-- Settings (all optional, e.g. `set pyembed.search_strategy = 'exact'`):
--   pyembed.search_strategy ('exact' | 'hnsw' forces one), pyembed.search_ef_search,
--   pyembed.search_max_scan_tuples, pyembed.search_rerank (candidates per result: vector 1,
--   halfvec 2, bit 40), pyembed.search_overfetch (filtered candidates per result, 4),
--   pyembed.search_cost_* (see search_costs).
create or replace function pyembed.search_plan(
    query vector, k integer default 10, filters jsonb default '{}',
    exclude_user bigint default null, model_id integer default null)
returns jsonb
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    m record;
    f jsonb := coalesce(filters, '{}');
    fsql text := 'true';
    storage text;
    index_name text;
    -- Settings are read inline, not through a function: every plpgsql call costs a few
    -- microseconds per transaction, and a plain unfiltered search is a few hundred.
    forced text := coalesce(nullif(current_setting('pyembed.search_strategy', true), ''), 'auto');
    raw_rerank text := nullif(current_setting('pyembed.search_rerank', true), '');
    raw_ef text := nullif(current_setting('pyembed.search_ef_search', true), '');
    raw_tuples text := nullif(current_setting('pyembed.search_max_scan_tuples', true), '');
    raw_overfetch text := nullif(current_setting('pyembed.search_overfetch', true), '');
    total double precision;
    explained text;
    estimated double precision;
    counted bigint;
    passing double precision;
    exact_ms double precision;
    hnsw_ms double precision;
    hnsw_tuples double precision;
    break_even double precision;
    first_batch_ms double precision;
    probing boolean := false;
    band double precision;
    strategy text;
    reason text;
    fetch_n integer;
    ef integer;
    max_tuples integer;
    prepared text;
begin
    select em.model_id, em.name, em.dimensions, em.distance,
           coalesce(em.config->>'index_storage', 'vector') as storage,
           pyembed.model_ef_search(em.config) as ef_unfiltered
    into m from pyembed.embedding_models em
    where em.model_id = search_plan.model_id
       or (search_plan.model_id is null and em.status = 'active' and em.kind = 'text');
    if not found and search_plan.model_id is null then
        raise exception 'no active embedding model' using errcode = 'PE001',
            hint = 'register one with `pyembed-db model register` and activate it';
    elsif not found then
        raise exception 'unknown model_id %', search_plan.model_id using errcode = 'PE002';
    end if;
    perform pyembed.check_search_args(k, query, m.dimensions, m.distance,
                                      m.model_id || ' (' || m.name || ')');
    if exclude_user is not null
       and not exists (select from pyembed.users u where u.user_id = exclude_user) then
        raise exception 'unknown user_id %', exclude_user using errcode = 'PE003';
    end if;
    if forced not in ('auto', 'exact', 'hnsw') then
        raise exception 'pyembed.search_strategy must be auto, exact or hnsw, got %',
            quote_literal(forced) using errcode = 'PE012';
    end if;
    if coalesce(raw_rerank, raw_ef, raw_tuples, raw_overfetch) is not null then
        perform pyembed.search_setting('search_rerank', 1),
                pyembed.search_setting('search_ef_search', 1),
                pyembed.search_setting('search_max_scan_tuples', 1),
                pyembed.search_setting('search_overfetch', 1);
    end if;

    storage := m.storage;
    index_name := pyembed.model_index_name(m.model_id, storage);
    select greatest(c.reltuples, 0) into total from pg_class c
    where c.oid = 'pyembed.items'::regclass and c.reltuples >= 0;
    -- Quantized indexes return approximate distances: fetch more, re-rank with the full vectors.
    fetch_n := greatest(k, least(1000, k * coalesce(raw_rerank::double precision,
                        case storage when 'bit' then 40 when 'halfvec' then 2 else 1 end)));

    if f <> '{}' then
        fsql := pyembed.filter_sql(f);
        -- Under a filter the index returns candidates only nearly in order (relaxed iterative
        -- scan), and a filter correlated with the query makes that worse: collect several per
        -- result and keep the nearest (bench/filtered_search_real.py picked 4).
        fetch_n := greatest(fetch_n, least(1000, ceil(k * coalesce(
            raw_overfetch::double precision, 4)))::integer);
    else
        prepared := pyembed.search_function_name(index_name);
        if to_regproc('pyembed.' || prepared) is null then
            prepared := null;
        end if;
    end if;
    -- Candidates per layer-0 search. Text-embedding queries far from every item (short titles
    -- searching reviews) need many: on the reviews corpus (m 32, ef_construction 200) ef 200
    -- reached recall@10 0.987 with a query at 0.5, 600 0.996 with none under 0.9; under a filter
    -- the iterative scan's later batches are less precise, and 800 held 0.99 / 0.8
    -- (bench/filtered_search_real.py, docs/search.md *Recall*).
    -- A behavior model's unfiltered value is calibrated on its own queries
    -- (pyembed.calibrate_search).
    ef := least(1000, coalesce(raw_ef::double precision,
                               greatest(case when f = '{}' then m.ef_unfiltered else 800 end,
                                        2 * fetch_n)));

    if fsql <> 'true' then
        execute 'explain (format json) select 1 from pyembed.items i where ' || fsql
            into explained using f;
        estimated := (explained::jsonb #>> '{0,Plan,Plan Rows}')::double precision;
        select * into exact_ms, hnsw_ms, hnsw_tuples, break_even, first_batch_ms
        from pyembed.search_costs(estimated, coalesce(total, estimated), fetch_n, ef,
                                  m.dimensions);
        -- Unsure: never analyzed, or the two costs within 4x of each other. A count that stops
        -- at 4x the rows where the costs cross is cheap next to either path.
        if total is null or exact_ms between hnsw_ms / 4 and hnsw_ms * 4 then
            -- ~ the rows at which the costs cross, scaled from the estimate (exact is linear)
            band := 4 * greatest(k, estimated * hnsw_ms / greatest(exact_ms, 1e-9));
            execute format('select count(*) from (select from pyembed.items i where %s limit %s) s',
                           fsql, least(ceil(band), 1e8)::bigint + 1)
                into counted using f;
        end if;
    end if;
    -- A count that reached its limit is only a lower bound: keep the estimate when larger.
    passing := case when counted is null then coalesce(estimated, total)
                    when counted <= ceil(band) then counted
                    else greatest(counted, coalesce(estimated, total)) end;
    if fsql <> 'true' then
        select * into exact_ms, hnsw_ms, hnsw_tuples, break_even, first_batch_ms
        from pyembed.search_costs(passing, coalesce(total, passing), fetch_n, ef, m.dimensions);
    end if;

    if to_regclass('pyembed.' || index_name) is null then
        strategy := 'exact';
        reason := format('no HNSW index %s (run pyembed.ensure_model_index)', index_name);
    elsif forced <> 'auto' then
        strategy := forced;
        reason := 'forced by pyembed.search_strategy';
    elsif fsql = 'true' then
        strategy := 'hnsw';
        reason := 'no filter';
    else
        strategy := case when exact_ms <= hnsw_ms then 'exact' else 'hnsw' end;
        reason := format('%s rows pass the filter: exact ~%s ms %s hnsw ~%s ms (%s index tuples)',
                         passing::bigint, round(exact_ms::numeric, 2),
                         case when exact_ms <= hnsw_ms then '<=' else '>' end,
                         round(hnsw_ms::numeric, 2), round(hnsw_tuples::numeric));
        -- A filter correlated with the query can pass `fetch` of the query's nearest `ef`
        -- rows, which the first batch of the index scan returns: when that batch costs under a
        -- tenth of the exact path, try it first (and stop there: max_scan_tuples = ef).
        if strategy = 'exact' and exact_ms >= 10 * first_batch_ms then
            strategy := 'hnsw';
            probing := true;
            reason := reason || format(', but the first index batch (~%s ms) is tried first',
                                       round(first_batch_ms::numeric, 2));
        end if;
    end if;
    -- Under a filter the scan stops after the first batch (ef_search tuples), or at twice the
    -- tuples a filter independent of the query needs when that is more; then the exact path
    -- takes over. A filter anti-correlated with the query (few of its rows near it) would
    -- otherwise be answered by the iterative scan's later batches, whose recall is poor (class
    -- = Dresses on the reviews: 3 of the 10 nearest found after 2,127 tuples; 0.95 mean).
    max_tuples := least(1000000, coalesce(raw_tuples::double precision,
        case when fsql = 'true' then 20000
             when probing then ef
             else greatest(ef, 2 * fetch_n * coalesce(total, passing) / greatest(passing, 1))
        end));

    return jsonb_build_object(
        'strategy', strategy, 'reason', reason, 'model_id', m.model_id,
        'dimensions', m.dimensions, 'distance', m.distance, 'storage', storage,
        'index', index_name, 'filter_sql', fsql, 'k', k, 'fetch', fetch_n,
        'estimated_rows', estimated, 'counted_rows', counted, 'index_rows', total,
        'count_limit', case when counted is not null then least(ceil(band), 1e8)::bigint + 1 end,
        'selectivity', case when total > 0 then least(passing / total, 1) end,
        'costs', case when fsql <> 'true' then jsonb_build_object(
            'exact_ms', round(exact_ms::numeric, 3), 'hnsw_ms', round(hnsw_ms::numeric, 3),
            'hnsw_tuples', round(hnsw_tuples::numeric),
            'break_even_tuples', round(break_even::numeric),
            'first_batch_ms', round(first_batch_ms::numeric, 3)) end,
        'ef_search', ef, 'max_scan_tuples', max_tuples, 'exclude_user', exclude_user,
        'function', prepared);
end
$$;

-- The SQL text of one strategy, from a plan made by search_plan. Parameters:
-- $1 filters, $2 query, $3 excluded item ids, $4 candidates to fetch, $5 k, $6 (filtered HNSW
-- only) the index entries to read at most.
-- Readers can call it with any jsonb, so nothing in `plan` is pasted as SQL: the filter clause
-- is rebuilt from plan->'filters' by pyembed.filter_sql (validated keys, values as $1), the
-- model and dimension are cast to integers, storage and distance are whitelisted.
-- Returns one row: (ids bigint[], distances double precision[], collected bigint): the k best
-- first, and how many candidates the index path collected (fewer than $4: its scan stopped).
create or replace function pyembed.search_sql(plan jsonb, strategy text) returns text
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    dims integer := (plan->>'dimensions')::integer;
    model integer := (plan->>'model_id')::integer;
    storage text := plan->>'storage';
    op text := case plan->>'distance' when 'cosine' then '<=>' when 'l2' then '<->' else '<#>' end;
    fsql text := pyembed.filter_sql(coalesce(plan->'filters', '{}'));
    filtered boolean := fsql <> 'true';
    -- Only when excluding: even an empty "<> all" costs the planner time.
    excluding text := case when plan->>'exclude_user' is not null
                             or (plan->>'excluding')::boolean
                           then ' and ie.item_id <> all ($3)' else '' end;
    indexed text;
begin
    if storage not in ('vector', 'halfvec', 'bit') then
        raise exception 'unknown index storage %', quote_literal(storage) using errcode = '22023';
    end if;
    if strategy = 'exact' then
        -- No cast on the column: this ORDER BY cannot match the HNSW index, so it is exact.
        return format($q$
            select array_agg(item_id order by d, item_id), array_agg(d order by d, item_id),
                   count(*)
            from (select ie.item_id, ie.embedding %s $2 as d
                  from pyembed.item_embeddings ie
                  join pyembed.items i on i.item_id = ie.item_id
                  where ie.model_id = %s and (%s)%s
                  order by d, ie.item_id
                  limit $5) r$q$, op, model, fsql, excluding);
    end if;
    -- The expression must be the one ensure_model_index indexed, or the planner cannot use it.
    indexed := case storage
        when 'bit' then format('binary_quantize(ie.embedding)::bit(%1$s) <~> '
                               'binary_quantize($2)::bit(%1$s)', dims)
        else format('(ie.embedding::%1$s(%2$s)) %3$s ($2::%1$s(%2$s))', storage, dims, op) end;
    -- Candidates in index order (relaxed: nearly sorted), then the k nearest of them by exact
    -- distance. With float32 storage the indexed distance is exact; quantized storage re-ranks
    -- the candidates with the full vectors. `+ 0`: with relaxed_order the index returns
    -- candidates only nearly sorted, but the planner would take them as sorted by d and only
    -- finish the aggregates' ORDER BY (presorted aggregate input).
    if filtered then
        -- The first $6 index entries nearest the query (a hard bound: hnsw.max_scan_tuples is
        -- not one, past it pgvector still returns every candidate it discarded), then the
        -- first $4 of them passing the filter. Fewer: the filter is anti-correlated with the
        -- query, and the exact path answers. LATERAL ... OFFSET 0 keeps the index scan the
        -- driving side (read lazily, stopping at $4), whatever the filter's estimate.
        return format($q$
            select (array_agg(item_id order by d, item_id))[1:$5],
                   (array_agg(d order by d, item_id))[1:$5], count(*)
            from (select ie.item_id, ie.d
                  from (select ie.item_id, %s as d
                        from pyembed.item_embeddings ie
                        where ie.model_id = %s
                        order by %s
                        limit $6) ie
                  cross join lateral (select from pyembed.items i
                                      where i.item_id = ie.item_id and (%s)%s offset 0) f
                  limit $4) c$q$,
            case storage when 'vector' then '(' || indexed || ') + 0'
                         else format('ie.embedding %s $2', op) end,
            model, indexed, fsql, excluding);
    end if;
    return format($q$
        select (array_agg(item_id order by d, item_id))[1:$5],
               (array_agg(d order by d, item_id))[1:$5], count(*)
        from (select ie.item_id, %s as d
              from pyembed.item_embeddings ie
              where ie.model_id = %s%s
              order by %s
              limit $4) c$q$,
        case storage when 'vector' then '(' || indexed || ') + 0'
                     else format('ie.embedding %s $2', op) end,
        model, excluding, indexed);
end
$$;

-- Unfiltered HNSW searches, the most common kind, run in pyembed.search_unfiltered: one
-- function holding, for every model with an HNSW index, the statement of search_sql as static
-- SQL (a branch per model). PostgreSQL then plans each statement once per session instead of on
-- every call (EXECUTE plans each time, and planning costs about half as much as running the
-- query), and pyembed.search calls it without a plan or a dynamic call. force_generic_plan keeps
-- the plan even though LIMIT is a parameter. A generic plan costs that LIMIT as 10% of the rows,
-- which on a small catalog makes scanning every vector and sorting look cheaper than the index:
-- enable_sort and enable_seqscan off keep it on the index (the final sort of k rows is in every
-- plan, so it decides nothing). Parameters $1..$5 are those of search_sql; fetch_n, ef_search
-- and max_scan_tuples null take the model's defaults; model_id null is the active model. OUT
-- complete: true (ids, distances are the answer), false (the scan collected fewer than fetch_n
-- candidates: run the exact path), null (no branch for this model: run the general path).
-- ensure_model_index re-creates it (through create_search_function), and so does the end of
-- this file, so it follows every change of search_sql.
create or replace function pyembed.search_function_name(index_name text) returns text
language sql immutable security invoker  -- inlined, like model_index_name
as $$
    select 'search_unfiltered'
$$;

create or replace function pyembed.create_search_function(p_model_id integer default null)
returns text
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $gen$
declare
    m record;
    storage text;
    rerank integer;
    branches text := '';
begin
    if p_model_id is not null then
        perform pyembed.resolve_model(p_model_id);
    end if;
    for m in select * from pyembed.embedding_models order by model_id loop
        storage := coalesce(m.config->>'index_storage', 'vector');
        continue when to_regclass(format('pyembed.%I', pyembed.model_index_name(m.model_id,
                                                                                 storage))) is null;
        rerank := case storage when 'bit' then 40 when 'halfvec' then 2 else 1 end;
        -- Integers and whitelisted words only (the model name goes through %L).
        branches := branches || format($b$
            %s model_id = %s then
                perform pyembed.check_search_args(k, query, %s, %L, %L);
                fetch_n := coalesce(fetch_n, greatest(k, least(1000, k * %s)));
                ef_search := coalesce(ef_search, least(1000, greatest(%s, 2 * fetch_n)));
                -- Nothing excluded and ef_search >= fetch_n: the first batch is the answer, and
                -- the iterative scan's bookkeeping would add about a tenth for nothing.
                perform set_config('hnsw.ef_search', ef_search::text, true),
                        set_config('hnsw.max_scan_tuples', coalesce(max_scan_tuples, 20000)::text,
                                   true),
                        set_config('hnsw.iterative_scan',
                                   case when cardinality(excluded) = 0 and ef_search >= fetch_n
                                        then 'off' else 'relaxed_order' end, true);
                %s
                into ids, distances, collected;$b$,
            case when branches = '' then 'if' else 'elsif' end, m.model_id, m.dimensions,
            m.distance, m.model_id || ' (' || m.name || ')', rerank,
            pyembed.model_ef_search(m.config),
            pyembed.search_sql(jsonb_build_object(
                'dimensions', m.dimensions, 'model_id', m.model_id, 'storage', storage,
                'distance', m.distance, 'excluding', true), 'hnsw'));
    end loop;
    branches := case when branches = '' then 'return;'
                     else branches || E'\n            else\n                return;\n            end if;'
                end;
    execute 'drop function if exists pyembed.search_unfiltered(jsonb, vector, bigint[], integer, '
            'integer, integer, integer, integer)';
    execute format($f$
        create function pyembed.search_unfiltered(
            filters jsonb, query vector, excluded bigint[], fetch_n integer, k integer,
            ef_search integer, max_scan_tuples integer, model_id integer,
            out ids bigint[], out distances double precision[], out complete boolean)
        language plpgsql volatile security invoker
        set search_path to pg_catalog, public, pg_temp
        set hnsw.iterative_scan to 'relaxed_order'
        set hnsw.ef_search to 40
        set hnsw.max_scan_tuples to 20000
        set plan_cache_mode to force_generic_plan
        set enable_sort to off
        set enable_seqscan to off
        as $body$
        declare
            collected bigint;
        begin
            model_id := coalesce(model_id, pyembed.active_model_id());
            %s
            complete := collected >= fetch_n;
        end
        $body$$f$, branches);
    execute 'revoke all on function pyembed.search_unfiltered from public';
    execute 'grant execute on function pyembed.search_unfiltered to pyembed_reader';
    return 'search_unfiltered';
end
$gen$;

-- Calibrates the unfiltered ef_search of a behavior model on the queries its recommendations
-- make: the smallest of 40, 64, 100, 160, 250, 400, 600 at which the index's top `k` reaches
-- `target_recall` of the exact scan's top `k`, averaged over a sample of the model's user vectors
-- (up to `sample`, fewer on large catalogs so that the exact scans stay within ~2e8 multiply-adds).
-- Recorded in embedding_models.config ('ef_search', 'ef_search_recall') and used by every
-- unfiltered search of the model (filtered ones keep 800); 600 when no step reaches the target.
-- Behavior models only: text-model queries are texts, whose distance to the items varies too
-- much for user vectors to stand for them (docs/search.md, *Recall*). Returns the chosen
-- ef_search, or null (nothing recorded) when the model has no HNSW index or no user vector.
-- activate_model runs it for a behavior model not calibrated yet (so every `pyembed-db train`
-- does); call it again after the catalog or the users changed a lot.
--   select pyembed.calibrate_search(5);
--
-- SECURITY DEFINER, like ensure_model_index: re-creating search_unfiltered takes the owner.
-- The sample reads user vectors of every tenant but returns one number.
create or replace function pyembed.calibrate_search(
    p_model_id integer, target_recall double precision default 0.99, k integer default 40,
    sample integer default 100)
returns integer
language plpgsql volatile security definer
set search_path to pg_catalog, public, pg_temp
as $$
declare
    m record;
    items bigint;
    queries vector[];
    exact bigint[];
    width integer;
    ef integer;
    recall double precision;
begin
    select * into m from pyembed.embedding_models where model_id = p_model_id;
    if not found then
        raise exception 'unknown model_id %', p_model_id using errcode = 'PE002';
    end if;
    if m.kind <> 'behavior' then
        raise exception 'model % is a % model: only behavior models are calibrated', p_model_id,
            m.kind using errcode = 'PE012';
    end if;
    if target_recall is null or not target_recall > 0 or target_recall > 1 then
        raise exception 'target_recall must be in (0, 1], got %', target_recall
            using errcode = 'PE012';
    end if;
    perform pyembed.check_search_args(k);
    if sample is null or sample < 1 or sample > 10000 then
        raise exception 'sample must be between 1 and 10000, got %', sample
            using errcode = 'PE012';
    end if;
    if to_regclass(format('pyembed.%I', pyembed.model_index_name(
            p_model_id, coalesce(m.config->>'index_storage', 'vector')))) is null then
        return null;
    end if;
    select count(*) into items from pyembed.item_embeddings ie where ie.model_id = p_model_id;
    width := least(k, items)::integer;
    -- A fixed sample (the same users for the same data), smaller on large catalogs.
    select array_agg(s.embedding order by s.o) into queries
    from (select ue.embedding, md5(ue.user_id::text) as o
          from pyembed.user_embeddings ue
          where ue.model_id = p_model_id and ue.kind = 'long_term'
          order by o
          limit least(sample, greatest(10, 2e8 / greatest(items * m.dimensions, 1)))::integer) s;
    if queries is null or width = 0 then
        return null;
    end if;
    -- The exact top `width` of each query, `width` ids per query. An ORDER BY on the uncast
    -- column cannot use the index (see search_sql), so this is the exact scan.
    select array_agg(x.item_id order by q.o, x.r) into exact
    from unnest(queries) with ordinality as q(v, o)
    cross join lateral (
        select ie.item_id, row_number() over (order by ie.embedding <#> q.v, ie.item_id) as r
        from pyembed.item_embeddings ie
        where ie.model_id = p_model_id
        order by ie.embedding <#> q.v, ie.item_id
        limit width) x;
    foreach ef in array array[40, 64, 100, 160, 250, 400, 600] loop
        select avg((select count(*) from unnest(u.ids) as h(id)
                    where h.id = any (exact[(q.o - 1) * width + 1 : q.o * width]))::float8
                   / width)
        into recall
        from unnest(queries) with ordinality as q(v, o)
        cross join lateral pyembed.search_unfiltered('{}', q.v, '{}', width, width, ef, null,
                                                     p_model_id) u;
        exit when recall >= target_recall;  -- else the loop ends at 600
    end loop;
    update pyembed.embedding_models
    set config = config || jsonb_build_object('ef_search', ef,
                                              'ef_search_recall', round(recall::numeric, 4))
    where model_id = p_model_id;
    perform pyembed.create_search_function(p_model_id);
    return ef;
end
$$;

-- Runs the HNSW strategy of a plan. The SET clauses make every setting below local to this call:
-- PostgreSQL restores them when the function returns (set_config(..., true) inside a function
-- with a SET clause for the same setting does not outlive the call). relaxed_order: iterative
-- index scans continue past ef_search until enough rows pass the filter (up to
-- max_scan_tuples); enable_sort off steers the planner to the ordered index scan rather than
-- filter-then-sort.
drop function if exists pyembed.search_run_hnsw(jsonb, vector, jsonb, bigint[]);
create or replace function pyembed.search_run_hnsw(
    plan jsonb, query vector, filters jsonb, excluded bigint[],
    out ids bigint[], out distances double precision[], out collected bigint)
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
set hnsw.iterative_scan to 'relaxed_order'
set hnsw.ef_search to 40
set hnsw.max_scan_tuples to 20000
set enable_sort to off
as $$
begin
    perform set_config('hnsw.ef_search', plan->>'ef_search', true),
            set_config('hnsw.max_scan_tuples', plan->>'max_scan_tuples', true);
    execute pyembed.search_sql(plan || jsonb_build_object('filters', coalesce(filters, '{}')),
                               'hnsw') into ids, distances, collected
        using filters, query, excluded, (plan->>'fetch')::integer, (plan->>'k')::integer,
              (plan->>'max_scan_tuples')::integer;
end
$$;

-- Runs a plan made by search_plan: (ids, distances) best first, and whether the exact scan
-- took over because the index path collected fewer candidates than it asked for (its scan
-- reached max_scan_tuples, the break-even point, or fewer rows pass the filter than that).
-- `also_exclude`: more item ids to leave out (search_similar's own item).
drop function if exists pyembed.search_execute(jsonb, vector, jsonb, bigint);
create or replace function pyembed.search_execute(
    plan jsonb, query vector, filters jsonb, exclude_user bigint,
    also_exclude bigint[] default '{}',
    out ids bigint[], out distances double precision[], out fallback boolean)
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    f jsonb := coalesce(filters, '{}');
    excluded bigint[] := case when exclude_user is not null
                              then pyembed.user_item_ids(exclude_user) else '{}' end
                         || coalesce(also_exclude, '{}');
    fetch_n integer := (plan->>'fetch')::integer;
    k integer := (plan->>'k')::integer;
    collected bigint;
begin
    fallback := false;
    -- The filters the SQL is built from are the ones bound as $1 (search_sql).
    plan := plan || jsonb_build_object('filters', f, 'excluding', cardinality(excluded) > 0);
    if plan->>'strategy' = 'hnsw' and plan->>'function' is not null then
        select u.ids, u.distances, case u.complete when true then fetch_n when false then 0 end
        into ids, distances, collected
        from pyembed.search_unfiltered(f, query, excluded, fetch_n, k,
            (plan->>'ef_search')::integer, (plan->>'max_scan_tuples')::integer,
            (plan->>'model_id')::integer) u;
    end if;
    if plan->>'strategy' = 'hnsw' and collected is null then
        select r.ids, r.distances, r.collected into ids, distances, collected
        from pyembed.search_run_hnsw(plan, query, f, excluded) r;
    end if;
    if plan->>'strategy' = 'hnsw' and coalesce(collected, 0) < fetch_n then
        raise debug 'pyembed.search: HNSW collected % < % candidates, falling back to exact',
            coalesce(collected, 0), fetch_n;
        fallback := true;
    end if;
    if plan->>'strategy' = 'exact' or fallback then
        execute pyembed.search_sql(plan, 'exact') into ids, distances, collected
            using f, query, excluded, fetch_n, k;
    end if;
    ids := coalesce(ids, '{}');
    distances := coalesce(distances, '{}');
end
$$;

-- Item ids a user has any event on (for exclude_user).
create or replace function pyembed.user_item_ids(p_user_id bigint) returns bigint[]
language sql stable security invoker
set search_path to pg_catalog, pg_temp
as $$
    select coalesce(array_agg(distinct e.item_id), '{}')
    from pyembed.events e where e.user_id = p_user_id
$$;

-- The k items nearest to `query` among those passing `filters` (see pyembed.filter_sql), without
-- the items `exclude_user` has events on, for one model (default: the active one). Returns
-- min(k, number of passing items) rows: when the HNSW path finds fewer than k, the exact scan
-- runs. See pyembed.search_plan for the strategy; `set client_min_messages = debug` shows it.
--   select * from pyembed.search('[...]'::vector, 10, '{"category": "Comedy"}');
create or replace function pyembed.search(
    query vector, k integer default 10, filters jsonb default '{}',
    exclude_user bigint default null, model_id integer default null)
returns table (item_id bigint, external_id text, title text, distance double precision)
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    plan jsonb;
    found_ids bigint[];
    found_distances double precision[];
    complete boolean;
    excluded bigint[] := '{}';
begin
    -- The common case (no filter, default settings; with or without a user's items excluded:
    -- what recommendations ask) skips the plan: one static call of the per-model statements in
    -- search_unfiltered (plans cached per session), with the arguments search_plan would give.
    if (filters is null or filters = '{}')
       and coalesce(current_setting('pyembed.search_strategy', true), '') in ('', 'auto')
       and coalesce(current_setting('pyembed.search_ef_search', true), '')
           || coalesce(current_setting('pyembed.search_rerank', true), '')
           || coalesce(current_setting('pyembed.search_max_scan_tuples', true), '') = '' then
        if exclude_user is not null then
            if not exists (select from pyembed.users u where u.user_id = exclude_user) then
                raise exception 'unknown user_id %', exclude_user using errcode = 'PE003';
            end if;
            excluded := pyembed.user_item_ids(exclude_user);
        end if;
        select u.ids, u.distances, u.complete into found_ids, found_distances, complete
        from pyembed.search_unfiltered('{}', query, excluded, null, k, null, null, model_id) u;
    end if;
    if complete is not true then
        plan := pyembed.search_plan(query, k, filters, exclude_user, model_id);
        select r.ids, r.distances into found_ids, found_distances
        from pyembed.search_execute(plan, query, filters, exclude_user) r;
    end if;
    return query
        select i.item_id, i.external_id, i.title, x.d
        from unnest(found_ids, found_distances) with ordinality as x(id, d, o)
        join pyembed.items i on i.item_id = x.id
        order by x.o;
end
$$;

-- Like search_plan, but runs the search too: adds rows, fallback (HNSW found < k, exact ran)
-- and elapsed_ms.
create or replace function pyembed.explain_search(
    query vector, k integer default 10, filters jsonb default '{}',
    exclude_user bigint default null, model_id integer default null)
returns jsonb
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    plan jsonb := pyembed.search_plan(query, k, filters, exclude_user, model_id);
    started timestamptz := clock_timestamp();
    r record;
begin
    select * into r from pyembed.search_execute(plan, query, filters, exclude_user);
    return plan || jsonb_build_object(
        'rows', cardinality(r.ids), 'fallback', r.fallback,
        'elapsed_ms', round((extract(epoch from clock_timestamp() - started) * 1000)::numeric, 3));
end
$$;

-- "More like this": the k items nearest to an item's own vector, without the item itself.
create or replace function pyembed.search_similar(
    similar_to bigint, k integer default 10, filters jsonb default '{}',
    exclude_user bigint default null, model_id integer default null)
returns table (item_id bigint, external_id text, title text, distance double precision)
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    m integer := coalesce(search_similar.model_id, pyembed.active_model_id());
    source_id bigint := similar_to;
    v vector;
    plan jsonb;
    found_ids bigint[];
    found_distances double precision[];
begin
    perform pyembed.check_search_args(k);
    if not exists (select from pyembed.items i where i.item_id = source_id) then
        raise exception 'unknown item_id %', source_id using errcode = 'PE004';
    end if;
    select ie.embedding into v from pyembed.item_embeddings ie
    where ie.model_id = m and ie.item_id = source_id;
    if v is null then
        raise exception 'item % has no vector for model % yet', source_id, m
            using errcode = 'PE004', hint = 'run the worker (`pyembed-db worker --once`)';
    end if;
    -- The item is excluded inside the search (not dropped from k + 1 results), so k = 1000,
    -- the top of the range, works too.
    plan := pyembed.search_plan(v, k, filters, exclude_user, m);
    select r.ids, r.distances into found_ids, found_distances
    from pyembed.search_execute(plan, v, filters, exclude_user, array[source_id]) r;
    return query
        select i.item_id, i.external_id, i.title, x.d
        from unnest(found_ids, found_distances) with ordinality as x(id, d, o)
        join pyembed.items i on i.item_id = x.id
        order by x.o;
end
$$;

-- Hybrid keyword + vector search: full-text matches of `query_text` on items.search_text
-- (websearch syntax, English) and the nearest neighbours of `query`, both within `filters`,
-- fused by reciprocal rank fusion: score = sum of 1 / (rrf_k + rank) over the two lists.
-- Either input may be null (then only the other ranks). text_rank / vector_rank are the item's
-- ranks in each list (null when absent), distance its vector distance when it was a neighbour.
create or replace function pyembed.search_text(
    query_text text, query vector default null, k integer default 10, filters jsonb default '{}',
    exclude_user bigint default null, model_id integer default null, rrf_k integer default 60)
returns table (item_id bigint, external_id text, title text, score double precision,
               text_rank integer, vector_rank integer, distance double precision)
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    f jsonb := coalesce(filters, '{}');
    pool integer;
    tsq tsquery;
    excluded bigint[];
    text_ids bigint[] := '{}';
    vector_ids bigint[] := '{}';
    vector_distances double precision[] := '{}';
begin
    perform pyembed.check_search_args(k);
    if rrf_k is null or rrf_k < 1 then
        raise exception 'rrf_k must be >= 1, got %', rrf_k using errcode = 'PE012';
    end if;
    -- A tsquery of a very long text overflows the parser's stack; no real query is this long.
    if length(query_text) > 10000 then
        raise exception 'query_text is too long: % characters (max 10000)', length(query_text)
            using errcode = 'PE012';
    end if;
    tsq := websearch_to_tsquery('english', coalesce(query_text, ''));
    -- Matching and ranking cost grows with the query's nodes: ~3,900 OR/NOT operators in a
    -- 9,990-character text ran for minutes. 255 nodes is about 128 words.
    if numnode(tsq) > 255 then
        raise exception 'query_text is too complex: % terms and operators (max 255)',
            numnode(tsq) using errcode = 'PE012';
    end if;
    if query is null and numnode(tsq) = 0 then
        raise exception 'search_text needs query_text with words or a query vector'
            using errcode = 'PE012';
    end if;
    if exclude_user is not null
       and not exists (select from pyembed.users u where u.user_id = exclude_user) then
        raise exception 'unknown user_id %', exclude_user using errcode = 'PE003';
    end if;
    pool := least(1000, greatest(4 * k, 50));
    excluded := case when exclude_user is not null
                     then pyembed.user_item_ids(exclude_user) else '{}' end;
    if numnode(tsq) > 0 then
        execute format($q$
            select coalesce(array_agg(item_id order by r desc, item_id), '{}') from (
                select i.item_id, ts_rank_cd(i.search_text, $2) as r
                from pyembed.items i
                where i.search_text @@ $2 and (%s) and i.item_id <> all ($3)
                order by r desc, i.item_id limit $4) t$q$, pyembed.filter_sql(f))
            into text_ids using f, tsq, excluded, pool;
    end if;
    if query is not null then
        select coalesce(array_agg(s.item_id order by s.distance, s.item_id), '{}'),
               coalesce(array_agg(s.distance order by s.distance, s.item_id), '{}')
        into vector_ids, vector_distances
        from pyembed.search(query, pool, f, exclude_user, search_text.model_id) s;
    end if;
    return query
    with by_text as (
        select t.id, t.o::integer as rank from unnest(text_ids) with ordinality as t(id, o)
    ),
    by_vector as (
        select v.id, v.d as distance, v.o::integer as rank
        from unnest(vector_ids, vector_distances) with ordinality as v(id, d, o)
    ),
    fused as (
        select coalesce(t.id, v.id) as id,
               coalesce(1.0 / (rrf_k + t.rank), 0) + coalesce(1.0 / (rrf_k + v.rank), 0) as s,
               t.rank as tr, v.rank as vr, v.distance
        from by_text t full join by_vector v on v.id = t.id
    )
    select i.item_id, i.external_id, i.title, fu.s::double precision, fu.tr, fu.vr, fu.distance
    from fused fu join pyembed.items i on i.item_id = fu.id
    order by fu.s desc, fu.tr nulls last, fu.vr nulls last, i.item_id
    limit k;
end
$$;

-- Re-create search_unfiltered from the current models and indexes, and drop the per-index
-- functions of earlier releases (pyembed.search_item_embeddings_hnsw_m<id>...).
do $$
declare
    fn regprocedure;
begin
    for fn in select p.oid::regprocedure from pg_proc p
              where p.pronamespace = 'pyembed'::regnamespace
                and p.proname like 'search\_item\_embeddings\_hnsw\_%' loop
        execute format('drop function %s', fn);
    end loop;
    perform pyembed.create_search_function();
end
$$;
