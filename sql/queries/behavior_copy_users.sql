copy pyembed.user_embeddings (model_id, user_id, kind, embedding, event_count, event_watermark)
from stdin (format binary)
