-- Which release's function files a database runs (one row, written by every `migrate`).
create table pyembed.installation (
    singleton         boolean primary key default true check (singleton),
    functions_sha256  text not null check (functions_sha256 ~ '^[0-9a-f]{64}$'),
    package_version   text not null,
    applied_at        timestamptz not null default now()
);
