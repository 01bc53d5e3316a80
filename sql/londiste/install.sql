-- Londiste: install or upgrade.  The provider side needs PgQ
-- (sql/pgq/install.sql first); a subscriber-only database uses the
-- subscriber tables and functions and never calls the provider ones.
--
--     psql -v ON_ERROR_STOP=1 -f sql/londiste/install.sql DBNAME
--
-- One transaction; numbered migrations apply once, functions are
-- re-created; running it again changes nothing.
\set ON_ERROR_STOP 1
begin;
set local client_min_messages = warning;
-- Group: structure (numbered migrations, each applied once)
\ir structure/schema.sql
\ir structure/001_capture.sql
\ir structure/002_provider.sql
\ir structure/003_subscriber.sql
\ir structure/004_subscriber_state.sql
\ir structure/005_sync_machine.sql
\ir structure/006_replay_hold.sql
-- the machine's facts (generated), which migration 7's check uses
\ir functions/londiste.sync_machine.sql
\ir structure/007_merge_state_check.sql
\ir structure/008_unregistered.sql

-- Group: names (how tables and sequences are named in events and
-- registrations)
\ir functions/londiste.quote_table.sql
\ir functions/londiste.canonical_name.sql
\ir functions/londiste.resolve_name.sql

-- Group: provider: change capture, tables, sequences, table-list events
\ir functions/londiste.create_capture.sql
\ir functions/londiste.drop_capture.sql
\ir functions/londiste.provider_table.sql
\ir functions/londiste.provider_seq.sql
\ir functions/londiste.provider_notify_change.sql

-- Group: subscriber: tables and their states, sequences, position
\ir functions/londiste.subscriber_table.sql
\ir functions/londiste.merge_state_write.sql
\ir functions/londiste.subscriber_seq.sql
\ir functions/londiste.last_tick.sql
\ir functions/londiste.subscriber_dest.sql
\ir functions/londiste.deny_trigger.sql

-- Group: compare/repair (the consistent point)
\ir functions/londiste.tick_at_snapshot.sql
commit;
