-- Item ids of external ids, in order (pyembed.item_ids: PE004 names the first unknown one).
select pyembed.item_ids(%(external_ids)s::text[])
