select bm.state, em.checksum from pyembed.behavior_models bm
join pyembed.embedding_models em on em.model_id = bm.model_id
where bm.model_id = %(model_id)s
