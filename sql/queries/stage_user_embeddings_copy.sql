copy pg_temp.stage_user_embeddings
    (model_id, user_id, kind, slot, embedding, weight, event_count, event_watermark)
from stdin (format binary)
