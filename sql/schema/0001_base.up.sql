-- pyembed-db base schema: users, items, events, models, vectors and the change queues.
-- Frozen once released: change it with a new revision, never by editing this file.
-- Why each type was chosen: sql/README.md.

create extension if not exists vector;
create schema if not exists pyembed;

-- Least-privilege group roles (grants: sql/functions/90_grants.sql). Roles are cluster-wide, so
-- they are created once and shared by every database of the cluster.
do $$
declare
    role_name text;
begin
    foreach role_name in array array['pyembed_reader', 'pyembed_writer', 'pyembed_worker'] loop
        if not exists (select from pg_roles where rolname = role_name) then
            execute format('create role %I nologin', role_name);
        end if;
    end loop;
end
$$;

-- Multi-tenancy is optional: tenant_id defaults to the session's `pyembed.tenant_id` setting
-- (NULL when unset), and row-level security (end of file) shows each session only its tenant's
-- rows. The table owner and pyembed_worker see every tenant. (The setting is read inline rather
-- than through a function so that the function files can be dropped and re-created freely.)

create table pyembed.embedding_models (
    model_id      integer generated always as identity primary key,
    name          text not null,
    version       text not null default '1',
    dimensions    integer not null check (dimensions between 1 and 16000),
    distance      text not null default 'cosine' check (distance in ('cosine', 'l2', 'ip')),
    checksum      text not null check (checksum ~ '^[0-9a-f]{64}$'),
    source        text,
    config        jsonb not null default '{}',
    status        text not null default 'registered'
                  check (status in ('registered', 'syncing', 'active', 'retired')),
    created_at    timestamptz not null default now(),
    activated_at  timestamptz,
    unique (name, version)
);
-- At most one active model: searches never mix vectors of two models.
create unique index embedding_models_one_active
    on pyembed.embedding_models ((true)) where status = 'active';

create table pyembed.users (
    user_id      bigint generated always as identity primary key,
    tenant_id    text default nullif(current_setting('pyembed.tenant_id', true), ''),
    external_id  text not null check (length(external_id) between 1 and 512),
    attributes   jsonb not null default '{}' check (jsonb_typeof(attributes) = 'object'),
    created_at   timestamptz not null default now()
);
create unique index users_external_id on pyembed.users (external_id, (coalesce(tenant_id, '')));

create table pyembed.items (
    item_id      bigint generated always as identity primary key,
    tenant_id    text default nullif(current_setting('pyembed.tenant_id', true), ''),
    external_id  text not null check (length(external_id) between 1 and 512),
    title        text,
    body         text,
    category     text,
    tags         text[] not null default '{}',
    price        numeric(14, 2) check (price >= 0),
    attributes   jsonb not null default '{}' check (jsonb_typeof(attributes) = 'object'),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    search_text  tsvector generated always as (
        setweight(to_tsvector('english'::regconfig, left(coalesce(title, ''), 10000)), 'A')
        || setweight(to_tsvector('english'::regconfig, left(coalesce(body, ''), 100000)), 'B')
    ) stored
);
create unique index items_external_id on pyembed.items (external_id, (coalesce(tenant_id, '')));
create index items_category on pyembed.items (category);
create index items_price on pyembed.items (price);
create index items_created_at on pyembed.items (created_at);
create index items_tags on pyembed.items using gin (tags);
create index items_attributes on pyembed.items using gin (attributes jsonb_path_ops);
create index items_search_text on pyembed.items using gin (search_text);

-- Weight of one event of each type; `rating` events use `value` instead (see sql/README.md).
create table pyembed.event_types (
    event_type   text primary key check (event_type ~ '^[a-z][a-z0-9_]{0,62}$'),
    weight       real not null check (weight between -100 and 100),
    description  text
);
insert into pyembed.event_types (event_type, weight, description) values
    ('view', 1, 'item page viewed'),
    ('click', 2, 'item clicked in a list'),
    ('add_to_cart', 3, 'item added to cart'),
    ('purchase', 5, 'item bought'),
    ('like', 3, 'explicit like'),
    ('dislike', -3, 'explicit dislike: pushes the user vector away'),
    ('rating', 1, 'explicit rating; weight = value - 3 (1-5 scale: 1 -> -2, 3 -> 0, 5 -> +2)');

create table pyembed.events (
    event_id     bigint generated always as identity primary key,
    tenant_id    text default nullif(current_setting('pyembed.tenant_id', true), ''),
    user_id      bigint not null references pyembed.users on delete cascade,
    item_id      bigint not null references pyembed.items on delete cascade,
    event_type   text not null references pyembed.event_types,
    value        real check (value = value),  -- rejects NaN
    occurred_at  timestamptz not null default now()
);
create index events_user_time on pyembed.events (user_id, occurred_at desc);
create index events_item on pyembed.events (item_id);
create index events_time on pyembed.events using brin (occurred_at);

-- One row per (model, item). The column is dimension-less so several models can coexist;
-- each model gets its own partial expression index with its dimension (see ensure_model_index).
create table pyembed.item_embeddings (
    model_id      integer not null references pyembed.embedding_models on delete cascade,
    item_id       bigint not null references pyembed.items on delete cascade,
    embedding     vector not null,
    content_hash  bytea not null,
    embedded_at   timestamptz not null default now(),
    primary key (model_id, item_id)
);
create index item_embeddings_item on pyembed.item_embeddings (item_id);

-- Items whose text could not be embedded, with the reason (empty text...).
create table pyembed.item_embedding_skips (
    model_id      integer not null references pyembed.embedding_models on delete cascade,
    item_id       bigint not null references pyembed.items on delete cascade,
    reason        text not null,
    content_hash  bytea,
    skipped_at    timestamptz not null default now(),
    primary key (model_id, item_id)
);

-- A user's taste: one long-term vector, an optional short-term one, and k interest vectors.
create table pyembed.user_embeddings (
    model_id         integer not null references pyembed.embedding_models on delete cascade,
    user_id          bigint not null references pyembed.users on delete cascade,
    kind             text not null check (kind in ('long_term', 'short_term', 'interest')),
    slot             smallint not null default 0 check (slot >= 0),
    embedding        vector not null,
    weight           real not null default 1 check (weight >= 0),
    event_count      integer not null default 0,
    event_watermark  bigint not null default 0,
    refreshed_at     timestamptz not null default now(),
    primary key (model_id, user_id, kind, slot)
);

-- Change queues, fed by triggers, drained by the worker with FOR UPDATE SKIP LOCKED.
create table pyembed.item_queue (
    item_id       bigint primary key references pyembed.items on delete cascade,
    enqueued_at   timestamptz not null default now(),
    attempts      integer not null default 0,
    last_error    text,
    not_before    timestamptz not null default now()
);
create index item_queue_ready on pyembed.item_queue (not_before);

create table pyembed.user_queue (
    user_id       bigint primary key references pyembed.users on delete cascade,
    enqueued_at   timestamptz not null default now(),
    attempts      integer not null default 0,
    last_error    text,
    not_before    timestamptz not null default now()
);
create index user_queue_ready on pyembed.user_queue (not_before);

-- Cached item popularity for cold-start recommendations (pyembed.popular_items), recomputed by
-- pyembed.refresh_popularity() from the worker or pg_cron: ranking every event on each cold-start
-- request costs ~0.7 s at 1M events; reading this table costs a few milliseconds.

create table pyembed.item_popularity (
    item_id       bigint primary key references pyembed.items on delete cascade,
    score         double precision not null check (score > 0),
    refreshed_at  timestamptz not null default now()
);
create index item_popularity_score on pyembed.item_popularity (score desc, item_id);

-- The state of the cache: one row, the newest event it includes and the half-life it used.
create table pyembed.item_popularity_state (
    singleton        boolean primary key default true check (singleton),
    event_watermark  bigint not null,
    half_life        interval not null,
    refreshed_at     timestamptz not null default now()
);

-- Row-level security: a session sees the rows of its tenant (`set pyembed.tenant_id = 'acme'`),
-- or only untenanted rows when the setting is unset. Vectors follow their user or item.
alter table pyembed.users enable row level security;
alter table pyembed.items enable row level security;
alter table pyembed.events enable row level security;
alter table pyembed.item_embeddings enable row level security;
alter table pyembed.user_embeddings enable row level security;
alter table pyembed.item_embedding_skips enable row level security;
alter table pyembed.item_queue enable row level security;
alter table pyembed.user_queue enable row level security;

create policy tenant_rows on pyembed.users
    using (tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), ''));
create policy tenant_rows on pyembed.items
    using (tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), ''));
create policy tenant_rows on pyembed.events
    using (tenant_id is not distinct from nullif(current_setting('pyembed.tenant_id', true), ''));
create policy tenant_rows on pyembed.item_embeddings
    using (exists (select from pyembed.items i where i.item_id = item_embeddings.item_id));
create policy tenant_rows on pyembed.user_embeddings
    using (exists (select from pyembed.users u where u.user_id = user_embeddings.user_id));
create policy tenant_rows on pyembed.item_embedding_skips
    using (exists (select from pyembed.items i where i.item_id = item_embedding_skips.item_id));
create policy tenant_rows on pyembed.item_queue
    using (exists (select from pyembed.items i where i.item_id = item_queue.item_id));
create policy tenant_rows on pyembed.user_queue
    using (exists (select from pyembed.users u where u.user_id = user_queue.user_id));

-- Foreign keys are checked without row-level security, so without this an event of tenant A
-- could name a user or item of tenant B (and a later refresh would copy B's vector into A's
-- user). Restrictive: it applies on top of every other policy, the worker's included.
create policy same_tenant on pyembed.events as restrictive for all
    using (true)
    with check (
        exists (select from pyembed.users u
                where u.user_id = events.user_id and u.tenant_id is not distinct from events.tenant_id)
        and exists (select from pyembed.items i
                    where i.item_id = events.item_id
                      and i.tenant_id is not distinct from events.tenant_id));

create policy worker_all on pyembed.users to pyembed_worker using (true) with check (true);
create policy worker_all on pyembed.items to pyembed_worker using (true) with check (true);
create policy worker_all on pyembed.events to pyembed_worker using (true) with check (true);
create policy worker_all on pyembed.item_embeddings to pyembed_worker using (true) with check (true);
create policy worker_all on pyembed.user_embeddings to pyembed_worker using (true) with check (true);
create policy worker_all on pyembed.item_embedding_skips to pyembed_worker using (true) with check (true);
create policy worker_all on pyembed.item_queue to pyembed_worker using (true) with check (true);
create policy worker_all on pyembed.user_queue to pyembed_worker using (true) with check (true);

alter table pyembed.item_popularity enable row level security;
create policy tenant_rows on pyembed.item_popularity
    using (exists (select from pyembed.items i where i.item_id = item_popularity.item_id));
create policy worker_all on pyembed.item_popularity to pyembed_worker using (true) with check (true);
