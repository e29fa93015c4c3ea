-- Every item with its text columns (pyembed.item_text_columns) and the content hashes of its
-- vectors in one model (none, one, or - if something went wrong - several).
select i.item_id, pyembed.item_text_source(to_jsonb(i)) as source,
       coalesce(array_agg(e.content_hash) filter (where e.item_id is not null), '{}') as hashes
from pyembed.items i
left join pyembed.item_embeddings e on e.item_id = i.item_id and e.model_id = %(model_id)s
group by i.item_id
order by i.item_id
