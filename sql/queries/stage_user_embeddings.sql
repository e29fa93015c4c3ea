-- A temporary twin of pyembed.user_embeddings for one bulk write: COPY FROM is refused on a
-- table with row-level security (the worker's policies apply), so rows are copied here and
-- moved with one INSERT (pyembed_db.bulk). Dropped first: one transaction may write
-- twice.
drop table if exists pg_temp.stage_user_embeddings;
create temp table stage_user_embeddings (like pyembed.user_embeddings including defaults)
    on commit drop;
