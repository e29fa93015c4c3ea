-- Recommendations: popularity (live and cached), Rocchio examples, MMR, pyembed.recommend.
-- Idempotent (create or replace). Documentation with examples: docs/users.md.

-- The half-life popularity decays with: the setting pyembed.popularity_half_life when set, else
-- the one the active behavior model chose on validation ('0' = no decay) when its ranking reads
-- popularity (a model that fuses none chose no half-life), else pyembed.half_life (default
-- 90 days).
create or replace function pyembed.popularity_half_life()
returns interval
language sql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
    select coalesce(
        pyembed.setting_interval('popularity_half_life', null),
        (select make_interval(secs => coalesce(
                    (bm.fusion->>'popularity_half_life_seconds')::double precision, 0))
         from pyembed.behavior_models bm
         join pyembed.embedding_models em on em.model_id = bm.model_id
         where em.kind = 'behavior' and em.status = 'active'
           and bm.fusion ? 'popularity_half_life_seconds'
           and (coalesce((bm.fusion->>'popularity')::real, 0) > 0
                or bm.fusion->>'method' = 'popular')),
        pyembed.setting_interval('half_life', '90 days'))
$$;

-- Popularity of every item with a positive score, computed live: the sum over its events of
-- the positive part of the event weight, decayed with `half_life` (default
-- pyembed.popularity_half_life()) from the newest event of the table.
create or replace function pyembed.popularity_scores(half_life interval default null)
returns table (item_id bigint, score double precision)
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    hl interval := coalesce(half_life, pyembed.popularity_half_life());
    hl_s double precision := extract(epoch from hl);
    newest timestamptz;
begin
    select max(e.occurred_at) into newest from pyembed.events e;
    return query
    select e.item_id,
           sum(greatest(pyembed.rule_weight(t.weight, e.event_type, e.value), 0)
               * pyembed.decay(extract(epoch from newest - e.occurred_at)::float8, hl_s))
    from pyembed.events e
    join pyembed.event_types t on t.event_type = e.event_type
    -- older than 30 half-lives weighs < 1e-9 of a new event: skip them
    where hl_s <= 0 or e.occurred_at >= newest - hl * 30
    group by e.item_id
    having sum(greatest(pyembed.rule_weight(t.weight, e.event_type, e.value), 0)) > 0;
end
$$;

-- Recompute the cached popularity (pyembed.item_popularity) used by popular_items(). Returns the
-- number of items scored, or 0 without doing anything when the cache already includes the newest
-- event with the same half-life (unless `force`: e.g. after deleting events), when it was
-- refreshed less than `min_interval` ago, or when another session is refreshing it.
-- For pg_cron: `select pyembed.refresh_popularity(min_interval => '5 minutes')`.
create or replace function pyembed.refresh_popularity(
    half_life interval default null, min_interval interval default '0', force boolean default false)
returns integer
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    hl interval := coalesce(half_life, pyembed.popularity_half_life());
    newest_event bigint;
    state record;
    scored integer;
begin
    if not pg_try_advisory_xact_lock(hashtext('pyembed.refresh_popularity')) then
        return 0;
    end if;
    select coalesce(max(e.event_id), 0) into newest_event from pyembed.events e;
    select * into state from pyembed.item_popularity_state;
    if found and not force and (
        (state.event_watermark = newest_event and state.half_life = hl)
        or state.refreshed_at > now() - coalesce(min_interval, '0')) then
        return 0;
    end if;
    delete from pyembed.item_popularity;
    insert into pyembed.item_popularity (item_id, score)
    select p.item_id, p.score from pyembed.popularity_scores(hl) p;
    get diagnostics scored = row_count;
    insert into pyembed.item_popularity_state (singleton, event_watermark, half_life, refreshed_at)
    values (true, newest_event, hl, now())
    on conflict (singleton) do update
        set event_watermark = excluded.event_watermark, half_life = excluded.half_life,
            refreshed_at = excluded.refreshed_at;
    return scored;
end
$$;

-- Most popular items within `filters`, without the items `exclude_user` has events on. Reads the
-- cache (refresh_popularity) once it exists; computes live before that or with a `half_life`.
create or replace function pyembed.popular_items(
    k integer default 10, filters jsonb default '{}', exclude_user bigint default null,
    half_life interval default null)
returns table (item_id bigint, external_id text, title text, score double precision)
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    source text := 'pyembed.popularity_scores($4)';
    excluded bigint[] := '{}';
begin
    perform pyembed.check_search_args(k);  -- the k range every search and list shares
    if exclude_user is not null then
        if not exists (select from pyembed.users u where u.user_id = exclude_user) then
            raise exception 'unknown user_id %', exclude_user using errcode = 'PE003';
        end if;
        excluded := pyembed.user_item_ids(exclude_user);
    end if;
    if half_life is null and exists (select from pyembed.item_popularity_state) then
        source := 'pyembed.item_popularity';
    end if;
    -- filter_sql refers to the filters as $1 only; `source` is one of two fixed strings.
    -- The user's items as one array, not a per-row NOT EXISTS on events: the planner estimates
    -- that probe with the average item, and for the most popular ones (20,000 events each at
    -- 1M events) it chose a bitmap AND of both event indexes, 1 ms per listed item; a
    -- custom plan hashes the array once.
    return query execute format($q$
        select i.item_id, i.external_id, i.title, p.score
        from %s p
        join pyembed.items i on i.item_id = p.item_id
        where (%s) and i.item_id <> all ($2)
        order by p.score desc, p.item_id
        limit $3
    $q$, source, pyembed.filter_sql(coalesce(filters, '{}')))
    using coalesce(filters, '{}'::jsonb), excluded, k, half_life;
end
$$;

-- Rocchio: normalize(alpha * q + beta * mean(positive) - gamma * mean(negative)); null terms
-- are left out. Defaults are the SMART coefficients 1, 0.75, 0.15.
create or replace function pyembed.rocchio(
    q vector, pos vector, neg vector, alpha double precision default 1,
    beta double precision default 0.75, gamma double precision default 0.15)
returns vector
language plpgsql immutable security invoker parallel safe
set search_path to pg_catalog, public, pg_temp
as $$
declare
    result vector := pyembed.scale(coalesce(q, pos, neg), 0);
begin
    if q is not null then
        result := result + pyembed.scale(q, alpha);
    end if;
    if pos is not null then
        result := result + pyembed.scale(pos, beta);
    end if;
    if neg is not null then
        result := result - pyembed.scale(neg, gamma);
    end if;
    return l2_normalize(result);
end
$$;

-- The mean vector of `items` in model `m` (null when the array is empty); PE004 on unknown ids.
create or replace function pyembed.items_mean(items bigint[], m integer) returns vector
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    missing bigint;
    mean vector;
begin
    if items is null or cardinality(items) = 0 then
        return null;
    end if;
    select x into missing from unnest(items) x
    where not exists (select from pyembed.items i where i.item_id = x) limit 1;
    if missing is not null then
        raise exception 'unknown item_id %', missing using errcode = 'PE004';
    end if;
    select avg(ie.embedding) into mean from pyembed.item_embeddings ie
    where ie.model_id = m and ie.item_id = any (items);
    return mean;
end
$$;

-- Greedy maximal marginal relevance over candidates (ids, relevance, vectors): picks k, each
-- maximizing (1 - diversity) * relevance - diversity * (max cosine similarity to those picked).
create or replace function pyembed.mmr(
    ids bigint[], relevance double precision[], vectors vector[], k integer, diversity real)
returns table (item_id bigint, pick integer)
language plpgsql immutable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    n integer := coalesce(cardinality(ids), 0);
    closest double precision[] := array_fill(0::double precision, array[greatest(n, 1)]);
    taken boolean[] := array_fill(false, array[greatest(n, 1)]);
    best integer;
    best_value double precision;
    value double precision;
begin
    -- O(k * n) in PL/pgSQL: bounded like every other size a reader can pass.
    if n > 4000 or k is null or k < 1 or k > 1000 then
        raise exception 'mmr takes at most 4000 candidates and k between 1 and 1000 (got %, %)',
            n, k using errcode = 'PE012';
    end if;
    if diversity is null or diversity < 0 or diversity > 1 then
        raise exception 'diversity must be between 0 and 1, got %', diversity
            using errcode = 'PE012';
    end if;
    for step in 1 .. least(k, n) loop
        best := null;
        for j in 1 .. n loop
            continue when taken[j];
            value := (1 - diversity) * relevance[j] - diversity * closest[j];
            if best is null or value > best_value then
                best := j;
                best_value := value;
            end if;
        end loop;
        taken[best] := true;
        item_id := ids[best];
        pick := step;
        return next;
        for j in 1 .. n loop
            continue when taken[j];
            closest[j] := greatest(closest[j], 1 - (vectors[j] <=> vectors[best]));
        end loop;
    end loop;
end
$$;

-- The final order of candidates given best first (`ids`, `relevance`): as given, or with MMR
-- over their vectors in `model` when diversity > 0. `pick` numbers the order from 1.
create or replace function pyembed.rank_candidates(
    ids bigint[], relevance double precision[], model integer, k integer, diversity real)
returns table (item_id bigint, pick integer)
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
begin
    if diversity > 0 then
        return query
        select r.item_id, r.pick
        from pyembed.mmr(
            ids, relevance,
            (select array_agg(ie.embedding order by x.o)
             from unnest(ids) with ordinality as x(id, o)
             left join pyembed.item_embeddings ie on ie.model_id = model and ie.item_id = x.id),
            k, diversity) r;
    else
        return query
        select x.id, x.o::integer from unnest(ids) with ordinality as x(id, o);
    end if;
end
$$;

-- Recommendations from a behavior model (pyembed.recommend with method 'behavior'): the
-- behavior-space top of `q` (inner product; cold items are there through their text map) within
-- the filters, without `excluded`, re-ranked by the fusion formula chosen on validation
-- (pyembed_db.behavior.fusion):
--   dot(q, b_j) / best dot + text_weight * cos(q_text, t_j) + popularity * pop_j / top pop
-- (the raw dot when the best is <= 0; a missing term counts 0; pop from the popularity cache).
-- The pool is 4k when a weight is set. Adding the text-space and popular tops as candidates
-- changed no metric on ML-100K and tripled the p50 (docs/users.md), so they are not searched.
-- MMR over the text vectors when diversity > 0.
create or replace function pyembed.recommend_behavior(
    q vector, q_text vector, behavior_model integer, text_model integer, k integer,
    filters jsonb, excluded_user bigint, diversity real, excluded bigint[], text_weight real,
    popularity real)
returns table (item_id bigint, external_id text, title text, score double precision, source text)
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    with_text boolean := text_weight > 0 and q_text is not null;
    fused boolean := diversity > 0 or popularity > 0 or with_text;
    pool integer := case when fused then least(4 * k, 1000) else k end;
    top_popularity double precision;
begin
    if popularity > 0 then
        select max(ip.score) into top_popularity from pyembed.item_popularity ip;
    end if;
    return query
    with hits as (
        -- inner-product distance is the negated dot product
        select s.item_id, s.external_id, s.title, -s.distance as dot
        from pyembed.search(q, least(pool + coalesce(cardinality(excluded), 0), 1000), filters,
                            excluded_user, behavior_model) s
        where s.item_id <> all (coalesce(excluded, '{}'))
        order by s.distance, s.item_id
        limit pool
    ),
    scored as (
        select h.item_id, h.external_id, h.title,
               case when not fused then h.dot
                    else h.dot / coalesce(nullif(greatest(max(h.dot) over (), 0), 0), 1)
                         + case when with_text
                                then coalesce(text_weight * (1 - (t.embedding <=> q_text)), 0)
                                else 0 end
                         + coalesce(popularity * ip.score / nullif(top_popularity, 0), 0)
               end as relevance
        from hits h
        left join pyembed.item_embeddings t
               on with_text and t.model_id = text_model and t.item_id = h.item_id
        left join pyembed.item_popularity ip on popularity > 0 and ip.item_id = h.item_id
    ),
    ranked as (
        select sc.*, r.pick
        from pyembed.rank_candidates(
                (select array_agg(s2.item_id order by s2.relevance desc, s2.item_id) from scored s2),
                (select array_agg(s2.relevance order by s2.relevance desc, s2.item_id)
                 from scored s2),
                text_model, k, diversity) r
        join scored sc on sc.item_id = r.item_id
    )
    select rk.item_id, rk.external_id, rk.title, rk.relevance, 'behavior'::text
    from ranked rk
    order by rk.pick
    limit k;
end
$$;

-- Recommendations for a user: one filtered ANN search per query vector (the user's interests,
-- each with a quota proportional to its weight, else the long-term vector), merged in
-- proportional round-robin and de-duplicated; `positive` / `negative` example items move each
-- query toward / away (Rocchio 1 / 0.75 / 0.15); MMR re-ranking when diversity > 0 over 4k
-- candidates. No vector and no positive example: popularity within the filters (source 'popular').
-- `vectors`: 'auto' (interests when present, else long_term), 'long_term', 'short_term' or
-- 'interest'. `popularity` > 0 blends in popularity: the most popular items (within the filters,
-- unseen) join the candidates and every candidate is ranked by
-- (1 - popularity) * similarity + popularity * score / top score.
-- With method 'behavior', `popularity` is the popularity weight of the fusion formula of
-- pyembed.recommend_behavior. `popularity` null (the default): the weight the behavior model
-- chose on validation for 'behavior', 0 for 'text'.
-- `method`: 'behavior' (the active behavior model: pyembed.recommend_behavior), 'text' (the
-- text vectors, as above) or 'popular'; null = the method the active behavior model chose on
-- validation when it was trained (behavior_models.fusion->>'method'), else 'text'. A user
-- without a behavior vector (no events the model knows) gets the text method, then popularity.
create or replace function pyembed.recommend(
    user_id bigint, k integer default 10, filters jsonb default '{}',
    exclude_seen boolean default true, diversity real default 0, positive bigint[] default null,
    negative bigint[] default null, model_id integer default null, vectors text default 'auto',
    popularity real default null, method text default null)
returns table (item_id bigint, external_id text, title text, score double precision, source text)
language plpgsql stable security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    m integer := coalesce(recommend.model_id, pyembed.active_model_id());
    uid bigint := recommend.user_id;
    excluded_user bigint := case when exclude_seen then recommend.user_id end;
    examples bigint[] := coalesce(positive, '{}') || coalesce(negative, '{}');
    pool integer;
    cached boolean := exists (select from pyembed.item_popularity_state);
    top_popularity double precision;
    q_vectors vector[];
    q_weights double precision[];
    q_sources text[];
    pos vector;
    neg vector;
    behavior_id integer;
    fusion jsonb;
    chosen text;
    q_behavior vector;
    q_text vector;
begin
    if not exists (select from pyembed.users u where u.user_id = uid) then
        raise exception 'unknown user_id %', uid using errcode = 'PE003';
    end if;
    perform pyembed.resolve_model(m);
    perform pyembed.check_search_args(k);  -- the k range every search and list shares
    if diversity is null or diversity < 0 or diversity > 1 then
        raise exception 'diversity must be between 0 and 1, got %', diversity
            using errcode = 'PE012';
    end if;
    if popularity < 0 or popularity > 1 or popularity = 'NaN' then
        raise exception 'popularity must be between 0 and 1, got %', popularity
            using errcode = 'PE012';
    end if;
    if vectors is null or vectors not in ('auto', 'long_term', 'short_term', 'interest') then
        raise exception 'vectors must be auto, long_term, short_term or interest, got %', vectors
            using errcode = 'PE012';
    end if;
    if method is not null and method not in ('behavior', 'text', 'popular') then
        raise exception 'method must be behavior, text or popular, got %', method
            using errcode = 'PE012';
    end if;

    select em.model_id, bm.fusion into behavior_id, fusion
    from pyembed.embedding_models em
    join pyembed.behavior_models bm on bm.model_id = em.model_id
    where em.kind = 'behavior' and em.status = 'active';
    chosen := coalesce(method, fusion->>'method', 'text');
    if chosen = 'behavior' and behavior_id is null then
        raise exception 'no active behavior model' using errcode = 'PE001',
            hint = 'train one with `pyembed-db train`';
    end if;
    if chosen = 'popular' then
        return query select p.item_id, p.external_id, p.title, p.score, 'popular'::text
                     from pyembed.popular_items(k, filters, excluded_user) p;
        return;
    end if;
    if chosen = 'behavior' then
        select ue.embedding into q_behavior from pyembed.user_embeddings ue
        where ue.model_id = behavior_id and ue.user_id = uid and ue.kind = 'long_term';
        if q_behavior is not null then
            if coalesce((fusion->>'text')::real, 0) > 0 then
                select ue.embedding into q_text from pyembed.user_embeddings ue
                where ue.model_id = m and ue.user_id = uid and ue.kind = 'long_term';
            end if;
            return query select * from pyembed.recommend_behavior(
                q_behavior, q_text, behavior_id, m, k, filters, excluded_user, diversity,
                examples, coalesce((fusion->>'text')::real, 0),
                coalesce(popularity, (fusion->>'popularity')::real, 0));
            return;
        end if;
    end if;
    -- The text vectors: popularity blends in only when asked.
    popularity := coalesce(popularity, 0);
    pool := case when diversity > 0 or popularity > 0 then least(4 * k, 1000) else k end;

    select array_agg(ue.embedding order by ue.slot), array_agg(ue.weight order by ue.slot),
           array_agg(case when ue.kind = 'interest' then 'interest:' || ue.slot else ue.kind end
                     order by ue.slot)
    into q_vectors, q_weights, q_sources
    from pyembed.user_embeddings ue
    where ue.model_id = m and ue.user_id = uid
      and ue.kind = case vectors when 'auto' then 'interest' else vectors end;
    if q_vectors is null and vectors = 'auto' then
        select array[ue.embedding], array[1::double precision], array['long_term']
        into q_vectors, q_weights, q_sources
        from pyembed.user_embeddings ue
        where ue.model_id = m and ue.user_id = uid and ue.kind = 'long_term';
    end if;

    pos := pyembed.items_mean(positive, m);
    neg := pyembed.items_mean(negative, m);
    if q_vectors is null and pos is null then
        return query select p.item_id, p.external_id, p.title, p.score, 'popular'::text
                     from pyembed.popular_items(k, filters, excluded_user) p;
        return;
    end if;
    if q_vectors is null then
        q_vectors := array[pyembed.rocchio(null, pos, neg)];
        q_weights := array[1::double precision];
        q_sources := array['examples'];
    elsif pos is not null or neg is not null then
        select array_agg(pyembed.rocchio(v, pos, neg) order by o) into q_vectors
        from unnest(q_vectors) with ordinality as x(v, o);
    end if;

    if popularity > 0 then
        select p.score into top_popularity from pyembed.popular_items(1) p;
    end if;

    return query
    with q as (
        select x.v, x.w / sum(x.w) over () as share, x.src, x.o
        from unnest(q_vectors, q_weights, q_sources) with ordinality as x(v, w, src, o)
    ),
    hits as (
        select s.item_id, s.external_id, s.title, s.distance, q.src,
               row_number() over (partition by q.o order by s.distance, s.item_id) / q.share
                   as turn
        from q
        cross join lateral pyembed.search(
            q.v, least(ceil(pool * q.share)::integer + cardinality(examples) + pool / 2 + 1, 1000),
            filters, excluded_user, m) s
        where s.item_id <> all (examples)
    ),
    merged as (
        select distinct on (h.item_id) h.*
        from hits h
        order by h.item_id, h.turn, h.distance
    ),
    top as (
        select mg.* from merged mg order by mg.turn, mg.distance, mg.item_id limit pool
    ),
    -- Popularity blend: the popular unseen items within the filters join the candidates.
    popular as (
        select p.item_id, p.external_id, p.title, p.score
        from pyembed.popular_items(pool, filters, excluded_user) p
        where popularity > 0 and p.item_id <> all (examples)
    ),
    pop_scores as (
        select ip.item_id, ip.score from pyembed.item_popularity ip where popularity > 0 and cached
        union all
        select ps.item_id, ps.score from pyembed.popularity_scores() ps
        where popularity > 0 and not cached
    ),
    candidates as (
        select t.item_id, t.external_id, t.title, 1 - t.distance as similarity, t.src
        from top t
        union all
        select p.item_id, p.external_id, p.title,
               (select max(1 - (ie.embedding <=> q)) from unnest(q_vectors) q
                join pyembed.item_embeddings ie on ie.model_id = m and ie.item_id = p.item_id),
               'popular'
        from popular p
        where not exists (select from top t where t.item_id = p.item_id)
    ),
    scored as (
        select c.item_id, c.external_id, c.title, c.src,
               case when popularity > 0
                    then (1 - popularity) * coalesce(c.similarity, 0)
                         + popularity * coalesce(ps.score / nullif(top_popularity, 0), 0)
                    else c.similarity end as relevance
        from candidates c
        left join pop_scores ps on ps.item_id = c.item_id
    ),
    ranked as (
        select sc.*, r.pick
        from pyembed.rank_candidates(
                (select array_agg(s2.item_id order by s2.relevance desc, s2.item_id) from scored s2),
                (select array_agg(s2.relevance order by s2.relevance desc, s2.item_id)
                 from scored s2),
                m, k, diversity) r
        join scored sc on sc.item_id = r.item_id
    )
    select rk.item_id, rk.external_id, rk.title, rk.relevance, rk.src
    from ranked rk
    order by rk.pick
    limit k;
end
$$;
