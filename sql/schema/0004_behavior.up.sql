-- Behavior (collaborative) models: item and user vectors learned from events, stored beside the
-- text vectors as models of kind 'behavior' (their own model id, dimension, distance and HNSW
-- index), so every search and recommend function works on them unchanged.
alter table pyembed.embedding_models
    add column kind text not null default 'text' check (kind in ('text', 'behavior'));

-- One active model per kind: searches never mix two text models, and recommendations use one
-- behavior model.
drop index pyembed.embedding_models_one_active;
create unique index embedding_models_one_active
    on pyembed.embedding_models (kind) where status = 'active';

-- What a trained behavior model needs beyond its item vectors: the fold-in state (user vectors
-- from a user's events without retraining), the text -> behavior map of cold items, the
-- parameters and fusion weights chosen on validation, and the events it was trained on.
create table pyembed.behavior_models (
    model_id         integer primary key references pyembed.embedding_models on delete cascade,
    method           text not null,
    params           jsonb not null,
    fusion           jsonb not null default '{}' check (jsonb_typeof(fusion) = 'object'),
    validation       jsonb not null default '{}',
    state            bytea not null,
    text_model_id    integer references pyembed.embedding_models on delete set null,
    event_watermark  bigint not null,
    trained_events   bigint not null,
    trained_at       timestamptz not null default now()
);
