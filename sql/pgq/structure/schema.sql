-- Schema and migration bookkeeping for PgQ.
--
-- Every structural change is a numbered migration (structure/NNN_*.sql) that
-- runs only when its number is missing from pgq.schema_migration, so
-- install.sql can be run again on an installed database (a no-op) and on a
-- database holding any earlier version of this project (an upgrade).
-- Serialise concurrent installers before anything else: the second one
-- waits, then finds every migration already applied.
do $$ begin perform pg_advisory_xact_lock(1886482800, 0); end $$;

create schema if not exists pgq;

create table if not exists pgq.schema_migration (
    version     int4 primary key,
    name        text not null,
    applied_at  timestamptz not null default now()
);
