-- Catalog size for coverage: items with a vector in the model.
select count(*) from pyembed.item_embeddings where model_id = %(model_id)s
