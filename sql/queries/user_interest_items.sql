-- Items with a positive decayed net weight for each user (interest k-means), without vectors.
select w.user_id, w.item_id, w.w_long, w.n_long, w.watermark
from pyembed.user_item_weights(%(users)s) w
where w.w_long > 0
  and exists (select from pyembed.item_embeddings ie
              where ie.model_id = %(model_id)s and ie.item_id = w.item_id)
order by w.user_id, w.item_id
