-- Drops the behavior models and their vectors.
delete from pyembed.embedding_models where kind = 'behavior';
drop table if exists pyembed.behavior_models;
drop index pyembed.embedding_models_one_active;
create unique index embedding_models_one_active
    on pyembed.embedding_models ((true)) where status = 'active';
alter table pyembed.embedding_models drop column kind;
