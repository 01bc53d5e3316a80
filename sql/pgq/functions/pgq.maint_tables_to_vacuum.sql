-- ----------------------------------------------------------------------
-- Function: pgq.maint_tables_to_vacuum()
--
--      The small, frequently updated PgQ tables that the ticker's
--      maintenance should VACUUM.
--
-- Returns:
--      Qualified table names.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.maint_tables_to_vacuum()
returns setof text as $$
    select unnest(array['pgq.subscription', 'pgq.consumer', 'pgq.queue',
                        'pgq.tick', 'pgq.retry_queue', 'pgq.failed_queue']);
$$ language sql stable;
