-- ----------------------------------------------------------------------
-- Function: pgq.version()
--
--      The PgQ API level this schema implements.  Programs written for
--      Skytools 2 compare against it; the schema's own migration level is
--      in pgq.schema_migration.
--
-- Returns:
--      '2.1.4'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.version()
returns text as $$
    select '2.1.4'::text;
$$ language sql immutable;
