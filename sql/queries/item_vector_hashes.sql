-- Every item with its embedded columns and the content hashes of its vectors in one model
-- (none, one, or - if something went wrong - several).
select i.item_id, i.title, i.body, i.category, i.tags, i.attributes,
       coalesce(array_agg(e.content_hash) filter (where e.item_id is not null), '{}') as hashes
from pyembed.items i
left join pyembed.item_embeddings e on e.item_id = i.item_id and e.model_id = %(model_id)s
group by i.item_id
order by i.item_id
