-- The active behavior model, or no row.
select em.model_id from pyembed.embedding_models em
where em.kind = 'behavior' and em.status = 'active'
