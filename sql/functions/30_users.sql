-- User vectors from behavior events: event weights, decay, set-based refresh (recommendations:
-- 40_recommend.sql). Idempotent (create or replace).
-- Documentation with examples: docs/users.md.
--
-- Weighting: an event weighs `event_types.weight`; a `rating` event weighs
-- `event_types.weight * (value - 3)` (1-5 scale: 1 -> -2, 3 -> 0, 5 -> +2 with the seeded
-- weight 1). Events on the same item add up first (a view then a dislike nets to -2).
-- Decay: an event `age` older than the user's latest event is multiplied by
-- 0.5^(age / half_life). Decaying from the user's latest event rather than from now() makes a
-- vector a pure function of the events (idempotent), and since vectors are L2-normalized it
-- points the same way as decaying from now() would.
-- The vector: normalize(mean(liked) - gamma * mean(disliked)), the means weighted by the items'
-- decayed net weights (liked: net > 0, disliked: net < 0).
-- Settings (per database, role or session, e.g. `alter database app set pyembed.half_life =
-- '30 days'`):
--   pyembed.half_life             default '90 days'; '0' disables decay
--   pyembed.short_term_window     default '30 days': the short_term vector uses the events
--                                 within this window before the user's latest event
--   pyembed.negative_weight       default 0.5 (gamma above)
--   pyembed.popularity_half_life  default pyembed.half_life (popular_items)
-- A user gets no vector (old ones are removed) when no item they touched has a positive net
-- weight or none of those items has a vector in the model; recommend() then falls back to
-- popularity.

-- A pyembed.* setting, or the fallback when unset or empty.
create or replace function pyembed.setting(name text, fallback text) returns text
language sql stable security invoker parallel safe
set search_path to pg_catalog, pg_temp
as $$
    select coalesce(nullif(current_setting('pyembed.' || name, true), ''), fallback)
$$;

-- The weight rule on its own (no table lookup), shared by every set-based query below.
-- No SET clause, so that the planner inlines it into those queries (a function with SET is
-- called row by row); it uses only built-in operators, which resolve in pg_catalog first.
create or replace function pyembed.rule_weight(type_weight real, event_type text, value real)
returns real
language sql immutable security invoker parallel safe
as $$
    select case when event_type = 'rating' then type_weight * (coalesce(value, 3) - 3)
                else type_weight end
$$;

-- Weight of one event: `select pyembed.event_weight('rating', 5)` -> 2.
create or replace function pyembed.event_weight(event_type text, value real default null)
returns real
language plpgsql stable security invoker parallel safe
set search_path to pg_catalog, pg_temp
as $$
declare
    type_weight real;
begin
    select t.weight into type_weight from pyembed.event_types t where t.event_type = $1;
    if not found then
        raise exception 'unknown event type %', $1 using errcode = 'PE012';
    end if;
    if $2 in ('NaN'::real, 'Infinity'::real, '-Infinity'::real) then
        raise exception 'value must be a finite number, got %', $2 using errcode = 'PE012';
    end if;
    return pyembed.rule_weight(type_weight, $1, $2);
end
$$;

-- Decay factor of an event `age_seconds` older than the reference time (inlinable, like
-- rule_weight). A half-life <= 0 means no decay.
create or replace function pyembed.decay(
    age_seconds double precision, half_life_seconds double precision)
returns double precision
language sql immutable security invoker parallel safe
as $$
    select case when half_life_seconds > 0
                then pg_catalog.power(0.5::double precision, age_seconds / half_life_seconds)
                else 1::double precision end
$$;

-- Per (user, item): the decayed net weight over all events (w_long) and within the short-term
-- window (w_short, null when none), the event counts, the user's latest event time and id.
create or replace function pyembed.user_item_weights(
    users bigint[], half_life interval default null, short_term_window interval default null)
returns table (user_id bigint, item_id bigint, w_long double precision, w_short double precision,
               n_long bigint, n_short bigint, last_event_at timestamptz, watermark bigint)
language sql stable security invoker
set search_path to pg_catalog, pg_temp
set work_mem to '64MB'
as $$
    -- materialized: the settings are read once, not once per row
    with cfg as materialized (
        select extract(epoch from coalesce(
                   half_life, pyembed.setting_interval('half_life', '90 days')))::float8 as hl,
               coalesce(short_term_window,
                        pyembed.setting_interval('short_term_window', '30 days')) as win
    ),
    bounds as (
        select e.user_id, max(e.occurred_at) as last_at, max(e.event_id) as watermark
        from pyembed.events e
        where e.user_id = any (users)
        group by e.user_id
    ),
    -- Not materialized: writing and re-reading the rows cost more than computing the decayed
    -- weight once per aggregate that reads it (ML-1M, 1,000 users: 0.38 s instead of 0.46 s).
    ev as (
        select e.user_id, e.item_id, b.last_at, b.watermark,
               pyembed.rule_weight(t.weight, e.event_type, e.value)
               * pyembed.decay(extract(epoch from b.last_at - e.occurred_at)::float8, cfg.hl)
                   as wd,
               e.occurred_at >= b.last_at - cfg.win as recent
        from pyembed.events e
        join bounds b on b.user_id = e.user_id
        join pyembed.event_types t on t.event_type = e.event_type
        cross join cfg
        where e.user_id = any (users)
    )
    select ev.user_id, ev.item_id, sum(ev.wd), sum(ev.wd) filter (where ev.recent),
           count(*), count(*) filter (where ev.recent), max(ev.last_at), max(ev.watermark)
    from ev
    group by ev.user_id, ev.item_id
$$;

-- Recompute the long_term and short_term vectors of `users` from all their events (set-based).
-- Their interest vectors (weighted k-means, computed by the Python worker) are kept: called from
-- SQL alone (pg_cron) they lag the new long_term vector until the worker's catch-up recomputes
-- them (pyembed_db.users.refresh_step); they are never dropped. Returns vectors written.
create or replace function pyembed.refresh_user_set(
    users bigint[], half_life interval default null, short_term_window interval default null,
    model_id integer default null)
returns integer
language plpgsql volatile security invoker
set search_path to pg_catalog, public, pg_temp
as $$
declare
    m integer := coalesce(model_id, pyembed.active_model_id());
    gamma double precision := pyembed.setting_number('negative_weight', 0.5, 0, 10);
    written integer;
begin
    perform pyembed.resolve_model(m);
    delete from pyembed.user_embeddings ue
    where ue.model_id = m and ue.user_id = any (users) and ue.kind in ('long_term', 'short_term');
    -- The user vector is mean(liked) - gamma * mean(disliked), each mean weighted by the items'
    -- decayed net weights, so the liked items dominate however many dislikes there are.
    -- Each item is scaled once (for its short-term or long-term sign class) and once more only
    -- when it also has events before the short-term window:
    --   a = liked in both, b = liked recently only, c = disliked in both, d = disliked recently
    --   only, e_pos / e_neg = the part of the long-term weight from before the window.
    with w as (
        select w.user_id, w.w_long as wl, w.w_short as ws, w.n_long, w.n_short, w.watermark,
               ie.embedding as v
        from pyembed.user_item_weights(users, half_life, short_term_window) w
        join pyembed.item_embeddings ie on ie.model_id = m and ie.item_id = w.item_id
    ),
    sums as (
        select w.user_id, max(w.watermark) as watermark,
               sum(w.v * array_fill(w.ws::real, array[vector_dims(w.v)])::vector)
                   filter (where w.ws > 0 and w.wl > 0) as a,
               sum(w.v * array_fill(w.ws::real, array[vector_dims(w.v)])::vector)
                   filter (where w.ws > 0 and w.wl <= 0) as b,
               sum(w.v * array_fill(w.ws::real, array[vector_dims(w.v)])::vector)
                   filter (where w.ws < 0 and w.wl < 0) as c,
               sum(w.v * array_fill(w.ws::real, array[vector_dims(w.v)])::vector)
                   filter (where w.ws < 0 and w.wl >= 0) as d,
               sum(w.v * array_fill((w.wl - greatest(w.ws, 0))::real,
                                    array[vector_dims(w.v)])::vector)
                   filter (where w.wl > 0 and w.wl <> coalesce(greatest(w.ws, 0), 0)) as e_pos,
               sum(w.v * array_fill((w.wl - least(w.ws, 0))::real,
                                    array[vector_dims(w.v)])::vector)
                   filter (where w.wl < 0 and w.wl <> coalesce(least(w.ws, 0), 0)) as e_neg,
               sum(w.wl) filter (where w.wl > 0) as p_long,
               -sum(w.wl) filter (where w.wl < 0) as n_long,
               sum(w.ws) filter (where w.ws > 0) as p_short,
               -sum(w.ws) filter (where w.ws < 0) as n_short,
               sum(w.n_long) as long_n,
               sum(w.n_short) as short_n
        from w
        group by w.user_id
    ),
    parts as (
        select s.user_id, s.watermark, s.long_n, s.short_n, s.p_long, s.p_short,
               coalesce(s.a + s.e_pos, s.a, s.e_pos) as long_pos,
               coalesce(s.c + s.e_neg, s.c, s.e_neg) as long_neg,
               coalesce(s.a + s.b, s.a, s.b) as short_pos,
               coalesce(s.c + s.d, s.c, s.d) as short_neg,
               s.n_long, s.n_short
        from sums s
    ),
    vectors as (
        select p.user_id, 'long_term' as kind, p.long_n as n, p.watermark,
               coalesce(pyembed.scale(p.long_pos, 1 / p.p_long)
                        + pyembed.scale(p.long_neg, gamma / p.n_long),
                        pyembed.scale(p.long_pos, 1 / p.p_long)) as v
        from parts p where p.p_long > 0
        union all
        select p.user_id, 'short_term', p.short_n, p.watermark,
               coalesce(pyembed.scale(p.short_pos, 1 / p.p_short)
                        + pyembed.scale(p.short_neg, gamma / p.n_short),
                        pyembed.scale(p.short_pos, 1 / p.p_short))
        from parts p where p.p_short > 0
    )
    insert into pyembed.user_embeddings
        (model_id, user_id, kind, slot, embedding, weight, event_count, event_watermark,
         refreshed_at)
    select m, v.user_id, v.kind, 0, l2_normalize(v.v), 1, v.n, v.watermark, now()
    from vectors v
    where vector_norm(v.v) > 0;
    get diagnostics written = row_count;
    return written;
end
$$;

-- Refresh one user now (whether queued or not) and drop their queue row.
-- Returns the number of vectors written (0 when the user gets none, see the header).
create or replace function pyembed.refresh_user(
    user_id bigint, half_life interval default null, short_term_window interval default null,
    model_id integer default null)
returns integer
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    written integer;
begin
    if not exists (select from pyembed.users u where u.user_id = refresh_user.user_id) then
        raise exception 'unknown user_id %', refresh_user.user_id using errcode = 'PE003';
    end if;
    written := pyembed.refresh_user_set(array[refresh_user.user_id], half_life,
                                        short_term_window, model_id);
    delete from pyembed.user_queue q where q.user_id = refresh_user.user_id;
    return written;
end
$$;

-- Claim up to `batch` ready queued users (FOR UPDATE SKIP LOCKED, so concurrent callers take
-- disjoint sets) and delete their queue rows, in the caller's transaction: a rollback queues
-- them again. With `since`, users with events at or after it that their vectors in `model_id`
-- do not include yet (event_id above their watermark) are queued first. Returns the claimed
-- user ids; the caller refreshes them before committing (refresh_user_batch below, or the
-- Python worker, which computes the same vectors outside SQL: pyembed_db/user_vectors.py).
create or replace function pyembed.claim_users(
    since timestamptz default null, batch integer default 1000, model_id integer default null)
returns table (user_id bigint)
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    m integer := coalesce(model_id, pyembed.active_model_id());
    claimed bigint[];
begin
    if batch is null or batch < 1 then
        raise exception 'batch must be >= 1, got %', batch using errcode = 'PE012';
    end if;
    if since is not null then
        insert into pyembed.user_queue (user_id)
        select e.user_id
        from pyembed.events e
        where e.occurred_at >= since
        group by e.user_id
        having max(e.event_id) > coalesce(
            (select max(ue.event_watermark) from pyembed.user_embeddings ue
             where ue.model_id = m and ue.user_id = e.user_id), 0)
        on conflict do nothing;
    end if;
    select array_agg(q.user_id order by q.user_id) into claimed
    from (select uq.user_id from pyembed.user_queue uq
          where uq.not_before <= now()
          order by uq.enqueued_at, uq.user_id
          limit batch
          for update skip locked) q;
    delete from pyembed.user_queue uq where uq.user_id = any (claimed);
    return query select unnest(claimed);
end
$$;

-- Claim a batch (claim_users) and refresh it in SQL, all in the caller's transaction; returns
-- the refreshed user ids.
create or replace function pyembed.refresh_user_batch(
    since timestamptz default null, batch integer default 1000, half_life interval default null,
    short_term_window interval default null, model_id integer default null)
returns table (user_id bigint)
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    m integer := coalesce(model_id, pyembed.active_model_id());
    claimed bigint[];
begin
    select array_agg(c.user_id order by c.user_id) into claimed
    from pyembed.claim_users(since, batch, m) c;
    if claimed is null then
        return;
    end if;
    perform pyembed.refresh_user_set(claimed, half_life, short_term_window, m);
    return query select unnest(claimed);
end
$$;

-- Queue users for a refresh: `users`, or with null every user who has events; returns the users
-- queued. A full refresh from SQL alone: `select pyembed.queue_users()`, then
-- `select pyembed.refresh_users()` until it returns 0. `do update` for the reason the events
-- trigger gives (events_enqueue_users): a user a worker is refreshing now is queued again.
create or replace function pyembed.queue_users(users bigint[] default null)
returns integer
language plpgsql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
declare
    unknown bigint;
    queued integer;
begin
    select x into unknown from unnest(users) x
    where not exists (select from pyembed.users u where u.user_id = x) limit 1;
    if unknown is not null then
        raise exception 'unknown user_id %', unknown using errcode = 'PE003';
    end if;
    insert into pyembed.user_queue (user_id)
    select u.user_id from pyembed.users u
    where case when users is null
               then exists (select from pyembed.events e where e.user_id = u.user_id)
               else u.user_id = any (users) end
    on conflict (user_id) do update set enqueued_at = pyembed.user_queue.enqueued_at;
    get diagnostics queued = row_count;
    if queued > 0 then
        perform pg_notify('pyembed_work', 'users');
    end if;
    return queued;
end
$$;

-- The pg_cron / worker entry point: `select pyembed.refresh_users()` refreshes one batch of
-- queued users and returns how many.
create or replace function pyembed.refresh_users(
    since timestamptz default null, batch integer default 1000, half_life interval default null,
    short_term_window interval default null, model_id integer default null)
returns integer
language sql volatile security invoker
set search_path to pg_catalog, pg_temp
as $$
    select count(*)::integer
    from pyembed.refresh_user_batch(since, batch, half_life, short_term_window, model_id)
$$;

-- v * c for a scalar c (pgvector multiplies vectors element-wise only).
create or replace function pyembed.scale(v vector, c double precision) returns vector
language sql immutable strict security invoker parallel safe
set search_path to pg_catalog, public, pg_temp
as $$
    select v * array_fill(c::real, array[vector_dims(v)])::vector
$$;
