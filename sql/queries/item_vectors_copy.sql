-- Item vectors of a model as binary COPY rows, by item id (pyembed_db/item_vectors.py parses
-- them with one numpy view): every item's, or those of %(items)s when it is not null.
copy (
    select ie.item_id, ie.embedding
    from pyembed.item_embeddings ie
    where ie.model_id = %(model_id)s
      and (%(items)s::bigint[] is null or ie.item_id = any (%(items)s::bigint[]))
    order by ie.item_id
) to stdout (format binary)
