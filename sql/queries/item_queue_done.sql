delete from pyembed.item_queue where item_id = any(%(item_ids)s)
