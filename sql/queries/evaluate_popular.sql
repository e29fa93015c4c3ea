-- The popularity ranking of the training events (the baseline).
select item_id from pyembed.popular_items(%(k)s)
