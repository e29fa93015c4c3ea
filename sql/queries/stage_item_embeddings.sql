-- A temporary twin of pyembed.item_embeddings for one bulk write (see
-- stage_user_embeddings.sql: COPY FROM is refused under row-level security).
drop table if exists pg_temp.stage_item_embeddings;
create temp table stage_item_embeddings (like pyembed.item_embeddings including defaults)
    on commit drop;
