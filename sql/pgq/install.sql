-- PgQ: install or upgrade.
--
--     psql -v ON_ERROR_STOP=1 -f sql/pgq/install.sql DBNAME
--
-- Runs in one transaction.  Structure changes are numbered migrations that
-- apply once; functions are (re)created every time.  Running it again on
-- an installed database changes nothing.  The TypeScript installer
-- (shared/pgq/install.ts) reads this same file and follows its \ir lines.
\set ON_ERROR_STOP 1
begin;
set local client_min_messages = warning;
-- Group: structure (numbered migrations, each applied once)
\ir structure/schema.sql
\ir structure/001_tables.sql

-- Group: helpers
\ir functions/pgq.seq_getval.sql
\ir functions/pgq.grant_perms.sql

-- Group: queue administration
\ir functions/pgq.create_queue.sql
\ir functions/pgq.drop_queue.sql
\ir functions/pgq.set_queue_config.sql
\ir functions/pgq.rename_queue.sql

-- Group: producer API
\ir functions/pgq.insert_event_raw.sql
\ir functions/pgq.insert_event.sql
\ir functions/pgq.current_event_table.sql

-- Group: consumer registration
\ir functions/pgq.register_consumer.sql
\ir functions/pgq.unregister_consumer.sql
\ir functions/pgq.register_consumer_copy.sql

-- Group: ticker
\ir functions/pgq.ticker.sql
\ir functions/pgq.force_tick.sql

-- Group: consumer API, the life of a batch: next_batch, then
-- get_batch_events (or a cursor), event_retry / event_failed for the
-- events that cannot be handled now, finish_batch
\ir functions/pgq.next_batch.sql
\ir functions/pgq.batch_event_tables.sql
\ir functions/pgq.batch_event_sql.sql
\ir functions/pgq.get_batch_events.sql
\ir functions/pgq.get_batch_cursor.sql
\ir functions/pgq.get_batch_info.sql
\ir functions/pgq.event_retry.sql
\ir functions/pgq.event_retry_raw.sql
\ir functions/pgq.event_failed.sql
\ir functions/pgq.finish_batch.sql

-- Group: failed and retried events
\ir functions/pgq.failed_event.sql
\ir functions/pgq.consumer_event_delete.sql

-- Group: information
\ir functions/pgq.version.sql
\ir functions/pgq.get_queue_info.sql
\ir functions/pgq.get_consumer_info.sql

-- Group: maintenance (run by the ticker)
\ir functions/pgq.maint_rotate_tables.sql
\ir functions/pgq.maint_retry_events.sql
\ir functions/pgq.maint_tables_to_vacuum.sql
commit;
