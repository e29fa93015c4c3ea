select count(*) from pyembed.item_queue
