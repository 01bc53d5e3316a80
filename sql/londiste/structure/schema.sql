-- Schema and migration bookkeeping for Londiste (same scheme as PgQ's:
-- numbered migrations applied once, functions re-created every time).
do $$ begin perform pg_advisory_xact_lock(1886482800, 1); end $$;

create schema if not exists londiste;

create table if not exists londiste.schema_migration (
    version     int4 primary key,
    name        text not null,
    applied_at  timestamptz not null default now()
);
