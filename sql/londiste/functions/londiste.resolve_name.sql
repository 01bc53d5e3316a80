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
-- ----------------------------------------------------------------------
create or replace function londiste.resolve_name(i_name text, i_kind "char")
returns oid as $$
declare
    v_parts  text[];
begin
    begin
        v_parts := parse_ident(i_name);
    exception when others then
        raise exception 'bad name: %', i_name;
    end;
    if array_length(v_parts, 1) = 1 then
        v_parts := array['public', v_parts[1]];
    elsif array_length(v_parts, 1) <> 2 then
        raise exception 'bad name: %', i_name;
    end if;
    return (select c.oid
              from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname = v_parts[1] and c.relname = v_parts[2]
               and (c.relkind = i_kind or (i_kind = 'r' and c.relkind = 'p')));
end;
$$ language plpgsql stable;
