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

-- When the schema belongs to a role the installer is a member of (the
-- owner role of sql/londiste/roles.sql), install as that role for the rest
-- of this transaction: every object stays the owner's, so any other member
-- (the ticker, replay, the operator) can upgrade it later.
do $$
declare
    v_owner name;
begin
    select r.rolname into v_owner
      from pg_catalog.pg_namespace n join pg_catalog.pg_roles r on r.oid = n.nspowner
     where n.nspname = 'pgq';
    if v_owner <> current_user and pg_catalog.pg_has_role(v_owner, 'MEMBER') then
        perform pg_catalog.set_config('role', v_owner, true);
    end if;
end $$;

create table if not exists pgq.schema_migration (
    version     int4 primary key,
    name        text not null,
    applied_at  timestamptz not null default now()
);
