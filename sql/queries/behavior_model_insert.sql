-- A new behavior model: its registry row, then its state (one statement, one model id).
with model as (
    insert into pyembed.embedding_models
        (name, version, dimensions, distance, checksum, source, config, kind)
    values (%(name)s, %(version)s, %(dimensions)s, 'ip', %(checksum)s, 'pyembed-db train',
            %(config)s, 'behavior')
    returning model_id
)
insert into pyembed.behavior_models
    (model_id, method, params, fusion, validation, state, text_model_id, event_watermark,
     trained_events)
select model.model_id, %(method)s, %(params)s, %(fusion)s, %(validation)s, %(state)s,
       %(text_model_id)s, %(watermark)s, %(events)s
from model
returning model_id
