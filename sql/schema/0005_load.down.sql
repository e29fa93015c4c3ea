-- Back to per-row foreign keys (each validated over the existing events). The reference
-- triggers go away with the function files, which every downgrade drops (migrations/env.py).
alter table pyembed.events
    add constraint events_user_id_fkey foreign key (user_id)
        references pyembed.users on delete cascade,
    add constraint events_item_id_fkey foreign key (item_id)
        references pyembed.items on delete cascade,
    add constraint events_event_type_fkey foreign key (event_type)
        references pyembed.event_types;
