-- Behavior models older than the active one and the one before it: deleted with their vectors
-- (the previous one is kept to switch back to).
delete from pyembed.embedding_models em
where em.kind = 'behavior' and em.status <> 'active'
  and em.model_id < (select max(o.model_id) from pyembed.embedding_models o
                     where o.kind = 'behavior' and o.status <> 'active')
