-- Which function files the database runs: `pyembed-db status` compares this checksum with the
-- installed package's files.
insert into pyembed.installation (singleton, functions_sha256, package_version, applied_at)
values (true, %(sha256)s, %(package_version)s, now())
on conflict (singleton) do update
    set functions_sha256 = excluded.functions_sha256,
        package_version = excluded.package_version,
        applied_at = excluded.applied_at
