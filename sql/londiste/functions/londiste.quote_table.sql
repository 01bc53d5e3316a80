-- ----------------------------------------------------------------------
-- Function: londiste.quote_table(i_table regclass)
--
--      The canonical name of a table in events and registrations:
--      schema.table, each part quoted only when it needs to be
--      (public.data1, public."Order Lines").
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.quote_table(i_table regclass)
returns text as $$
    select format('%I.%I', n.nspname, c.relname)
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where c.oid = i_table;
$$ language sql stable strict;
