-- True while items are waiting to be embedded (user refreshes wait so they see their vectors).
select exists (select from pyembed.item_queue where not_before <= now())
