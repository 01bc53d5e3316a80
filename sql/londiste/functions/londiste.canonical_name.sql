-- ----------------------------------------------------------------------
-- Function: londiste.canonical_name(i_name)
--
--      A table or sequence name in the form events and registrations use,
--      without looking at the catalog: `t` → public.t, unquoted parts
--      fold to lower case, each part quoted only where needed.  Equals
--      londiste.quote_table() of the same relation.
--
-- Errors:
--      'bad name: <name>' (SQLSTATE 42602, invalid_name: the command
--      replies bad_request)
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.canonical_name(i_name text)
returns text as $$
declare
    v_parts  text[];
begin
    begin
        v_parts := parse_ident(i_name);
    exception when others then
        raise exception using errcode = 'invalid_name', message = format('bad name: %s', i_name);
    end;
    if array_length(v_parts, 1) = 1 then
        return format('%I.%I', 'public', v_parts[1]);
    elsif array_length(v_parts, 1) = 2 then
        return format('%I.%I', v_parts[1], v_parts[2]);
    end if;
    raise exception using errcode = 'invalid_name', message = format('bad name: %s', i_name);
end;
$$ language plpgsql immutable strict;
