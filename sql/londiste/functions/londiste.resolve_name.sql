-- ----------------------------------------------------------------------
-- Function: londiste.resolve_name(i_name, i_kind)
--
--      Turns a user-given table or sequence name into the relation:
--      `t` means public.t; quoted parts keep their case
--      (`public."Odd Name"`).  i_kind is 'r' (table, also partitioned)
--      or 'S' (sequence).
--
-- Returns:
--      The relation's oid, NULL when there is no such relation.
--
-- Errors:
--      'bad name: <name>' for text that is not a (qualified) identifier.
--
-- Calls:
--      londiste.canonical_name(i_name)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.resolve_name(i_name text, i_kind "char")
returns oid as $$
    -- canonical_name checks the text and raises 'bad name'; its output is a
    -- well-formed qualified name, so to_regclass cannot fail on it.
    select c.oid
      from pg_class c
     where c.oid = to_regclass(londiste.canonical_name(i_name))
       and (c.relkind = i_kind or (i_kind = 'r' and c.relkind = 'p'));
$$ language sql stable;
