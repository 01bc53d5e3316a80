-- Database roles with the least privilege for PgQ and Londiste: one login
-- role per service and an operator, none of them superuser.  Run it as a
-- superuser (or a role with CREATEROLE that owns the replicated tables) on
-- each database of a job, once per side:
--
--     psql -v ON_ERROR_STOP=1 -v side=provider   -f sql/londiste/roles.sql PROVIDER_DB
--     psql -v ON_ERROR_STOP=1 -v side=subscriber -f sql/londiste/roles.sql SUBSCRIBER_DB
--
-- Running it again changes nothing.  Run it before the install and again
-- after it (and after an upgrade): before, it creates the roles and the
-- schemas pgq and londiste owned by the owner role, so that whichever
-- member installs, everything installed belongs to that role; after, it
-- grants on the installed tables (and gives the owner role any object of
-- those schemas that someone else created).  It sets no password: give each login role one
-- with `\password ROLE` (scram-sha-256) and put it in that service's
-- config or environment.  docs/security.md explains every grant.
--
-- psql variables (-v name=value), all optional except side:
--   side            provider or subscriber (a database that is both: run twice)
--   owner_role      owns the schemas pgq and londiste; no login (skytools_owner)
--   operator_role   a person's role: installs and upgrades with psql (skytools_operator)
--   ticker_role     the ticker, pgqadm's admin commands (skytools_ticker)
--   replay_role     replay, the londiste admin commands (skytools_replay)
--   copy_role       the copy workers (skytools_copy)
--   repair_role     the compare/repair workers (skytools_repair)
--   tables_schema   the schema of the replicated tables and sequences (public)
--   tables_owner    the role owning them; when given, replay and the copy
--                   become members of it where they need DDL on them
\set ON_ERROR_STOP 1
\if :{?side}
\else
do $$ begin raise exception 'set -v side=provider or -v side=subscriber'; end $$;
\endif
\if :{?owner_role}
\else
\set owner_role skytools_owner
\endif
\if :{?operator_role}
\else
\set operator_role skytools_operator
\endif
\if :{?ticker_role}
\else
\set ticker_role skytools_ticker
\endif
\if :{?replay_role}
\else
\set replay_role skytools_replay
\endif
\if :{?copy_role}
\else
\set copy_role skytools_copy
\endif
\if :{?repair_role}
\else
\set repair_role skytools_repair
\endif
\if :{?tables_schema}
\else
\set tables_schema public
\endif
\if :{?tables_owner}
\else
\set tables_owner ''
\endif

select :'side' in ('provider', 'subscriber') as side_ok \gset
\if :side_ok
\else
do $$ begin raise exception 'side must be provider or subscriber'; end $$;
\endif
select :'side' = 'provider' as is_provider, :'tables_owner' <> '' as has_tables_owner,
       current_setting('server_version_num')::int >= 150000 as pg15 \gset

begin;
set local client_min_messages = warning;

-- Group: roles (cluster-wide; created once, kept as they are after that)
select format('create role %I nologin', :'owner_role')
 where not exists (select 1 from pg_catalog.pg_roles where rolname = :'owner_role') \gexec
select format('create role %I login', r)
  from unnest(array[:'operator_role', :'ticker_role', :'replay_role', :'copy_role', :'repair_role']) r
 where not exists (select 1 from pg_catalog.pg_roles where rolname = r) \gexec

-- The operator installs and upgrades; the ticker and replay serve the
-- install commands over NATS and create queues and captures: members of
-- the owner.  The copy and repair workers are not.
select format('grant %I to %I', :'owner_role', r)
  from unnest(array[:'operator_role', :'ticker_role', :'replay_role']) r
 where not pg_catalog.pg_has_role(r, :'owner_role', 'MEMBER') \gexec

-- Group: the database
select format('grant connect on database %I to %I, %I, %I, %I, %I',
              current_database(), :'operator_role', :'ticker_role', :'replay_role', :'copy_role', :'repair_role') \gexec
select format('grant create on database %I to %I', current_database(), :'owner_role') \gexec

-- Group: the project's schemas, and everything in them, belong to the owner
create schema if not exists pgq;
create schema if not exists londiste;
select format('alter schema %I owner to %I', nspname, :'owner_role')
  from pg_catalog.pg_namespace where nspname in ('pgq', 'londiste') \gexec
select format('alter %s %I.%I owner to %I',
              case c.relkind when 'S' then 'sequence' when 'v' then 'view' else 'table' end,
              n.nspname, c.relname, :'owner_role')
  from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
 where n.nspname in ('pgq', 'londiste') and c.relkind in ('r', 'p', 'S', 'v')
   and c.relowner <> to_regrole(:'owner_role')
   -- a sequence owned by a column follows its table
   and (c.relkind <> 'S' or not exists (select 1 from pg_catalog.pg_depend d
                                         where d.classid = 'pg_class'::regclass and d.objid = c.oid
                                           and d.refclassid = 'pg_class'::regclass and d.deptype in ('a', 'i')))
 order by c.relkind = 'S', c.relispartition desc \gexec
select format('alter function %s owner to %I', p.oid::regprocedure, :'owner_role')
  from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
 where n.nspname in ('pgq', 'londiste') and p.proowner <> to_regrole(:'owner_role') \gexec

-- The copy and repair workers read the bookkeeping of both schemas and run
-- their functions; they write only the tables named below.  Tables that do
-- not exist yet (before the install) are skipped: run the script again
-- after the install.  The event tables of queues are granted to PUBLIC for
-- reading by pgq.grant_perms when a queue is created.
select format('grant usage on schema pgq, londiste to %I, %I', :'copy_role', :'repair_role') \gexec
select format('grant select on all tables in schema pgq, londiste to %I, %I', :'copy_role', :'repair_role') \gexec
select format('grant select on all sequences in schema pgq, londiste to %I, %I', :'copy_role', :'repair_role') \gexec
select format('grant %s on %s to %I', g.privileges, g.tbl, case g.who when 'copy' then :'copy_role' else :'repair_role' end)
  from (values
          -- copy, provider: the per-table consumer it registers, and ticks
          (true, 'copy', 'insert, update, delete', 'pgq.consumer'),
          (true, 'copy', 'insert, update, delete', 'pgq.subscription'),
          (true, 'copy', 'delete', 'pgq.retry_queue'),
          (true, 'copy', 'delete', 'pgq.failed_queue'),
          (true, 'copy', 'insert', 'pgq.tick'),
          -- (registering locks the queue's row: FOR SHARE needs UPDATE)
          (true, 'copy', 'update', 'pgq.queue'),
          (true, 'repair', 'update', 'pgq.queue'),
          -- repair, provider: the tick of its consistent point
          (true, 'repair', 'insert', 'pgq.tick'),
          -- copy, subscriber: each table's state, parked foreign keys, state events
          (false, 'copy', 'insert, update, delete', 'londiste.subscriber_table'),
          (false, 'copy', 'insert, update, delete', 'londiste.subscriber_pending_fkeys'),
          (false, 'copy', 'insert, update, delete', 'londiste.sync_outbox'),
          (false, 'copy', 'insert, update, delete', 'londiste.completed'),
          -- repair, subscriber: holding replay at its point
          (false, 'repair', 'insert, update, delete', 'londiste.replay_hold'))
       as g(provider_side, who, privileges, tbl)
 where g.provider_side = :'is_provider'::boolean and to_regclass(g.tbl) is not null \gexec
select format('grant usage, update on all sequences in schema pgq to %I, %I', :'copy_role', :'repair_role')
 where :'is_provider'::boolean \gexec
select format('grant usage on all sequences in schema londiste to %I, %I', :'copy_role', :'repair_role')
 where not :'is_provider'::boolean \gexec

-- Group: the replicated tables and sequences
select format('grant usage on schema %I to %I, %I, %I', :'tables_schema', :'replay_role', :'copy_role', :'repair_role') \gexec
\if :is_provider
-- replay adds captures (a trigger on each table); the copy and the compare read
select format('grant select, trigger on all tables in schema %I to %I', :'tables_schema', :'replay_role') \gexec
select format('grant select on all tables in schema %I to %I, %I', :'tables_schema', :'copy_role', :'repair_role') \gexec
select format('grant select on all sequences in schema %I to %I, %I', :'tables_schema', :'replay_role', :'copy_role') \gexec
\if :has_tables_owner
select format('alter default privileges for role %I in schema %I grant select, trigger on tables to %I',
              :'tables_owner', :'tables_schema', :'replay_role') \gexec
select format('alter default privileges for role %I in schema %I grant select on tables to %I, %I',
              :'tables_owner', :'tables_schema', :'copy_role', :'repair_role') \gexec
select format('alter default privileges for role %I in schema %I grant select on sequences to %I, %I',
              :'tables_owner', :'tables_schema', :'replay_role', :'copy_role') \gexec
-- provider remove drops the capture triggers, which only the table's owner may do
select format('grant %I to %I', :'tables_owner', :'replay_role')
 where not pg_catalog.pg_has_role(:'replay_role', :'tables_owner', 'MEMBER') \gexec
\endif
\else
-- replay applies changes and TRUNCATE and moves sequences; the repair
-- worker reads and, with --apply, writes rows; the copy loads tables
select format('grant select, insert, update, delete, truncate, trigger on all tables in schema %I to %I',
              :'tables_schema', :'replay_role') \gexec
select format('grant select, insert, update, delete on all tables in schema %I to %I', :'tables_schema', :'repair_role') \gexec
select format('grant select, insert, truncate on all tables in schema %I to %I', :'tables_schema', :'copy_role') \gexec
select format('grant select, update on all sequences in schema %I to %I', :'tables_schema', :'replay_role') \gexec
\if :has_tables_owner
select format('alter default privileges for role %I in schema %I grant select, insert, update, delete, truncate, trigger on tables to %I',
              :'tables_owner', :'tables_schema', :'replay_role') \gexec
select format('alter default privileges for role %I in schema %I grant select, insert, update, delete on tables to %I',
              :'tables_owner', :'tables_schema', :'repair_role') \gexec
select format('alter default privileges for role %I in schema %I grant select, insert, truncate on tables to %I',
              :'tables_owner', :'tables_schema', :'copy_role') \gexec
select format('alter default privileges for role %I in schema %I grant select, update on sequences to %I',
              :'tables_owner', :'tables_schema', :'replay_role') \gexec
-- the copy drops and re-creates indexes and constraints around the COPY,
-- deny-writes/allow-writes add and drop triggers: both only for the owner
select format('grant %I to %I', :'tables_owner', r)
  from unnest(array[:'replay_role', :'copy_role']) r
 where not pg_catalog.pg_has_role(r, :'tables_owner', 'MEMBER') \gexec
\endif
\endif

commit;

-- Group: replica mode.  Replay, the copy's catch-up and repair --apply write with
-- session_replication_role = replica so that the subscriber's own triggers
-- and foreign keys do not fire; PostgreSQL 15 lets a superuser grant that
-- one setting.  Cluster-wide, outside the transaction above.
\if :pg15
\if :is_provider
\else
select format('grant set on parameter session_replication_role to %I, %I, %I', :'replay_role', :'copy_role', :'repair_role') \gexec
\endif
\else
\warn 'PostgreSQL before 15 cannot grant SET on session_replication_role: the subscriber role of replay needs superuser there (docs/security.md)'
\endif
