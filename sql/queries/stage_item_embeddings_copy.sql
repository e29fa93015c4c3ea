copy pg_temp.stage_item_embeddings (model_id, item_id, embedding, content_hash)
from stdin (format binary)
