insert into pyembed.embedding_models (name, version, dimensions, distance, checksum, source, config)
values (%(name)s, %(version)s, %(dimensions)s, %(distance)s, %(checksum)s, %(source)s, %(config)s)
on conflict (name, version) do nothing
returning model_id
