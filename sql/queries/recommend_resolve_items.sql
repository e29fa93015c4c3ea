-- Item ids of external ids (the session's tenant only).
select external_id, item_id from pyembed.items where external_id = any(%(external_ids)s::text[])
