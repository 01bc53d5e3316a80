-- Schema and migration bookkeeping for Londiste (same scheme as PgQ's:
-- numbered migrations applied once, functions re-created every time).
do $$ begin perform pg_advisory_xact_lock(1886482800, 1); end $$;

create schema if not exists londiste;

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
     where n.nspname = 'londiste';
    if v_owner <> current_user and pg_catalog.pg_has_role(v_owner, 'MEMBER') then
        perform pg_catalog.set_config('role', v_owner, true);
    end if;
end $$;

create table if not exists londiste.schema_migration (
    version     int4 primary key,
    name        text not null,
    applied_at  timestamptz not null default now()
);
