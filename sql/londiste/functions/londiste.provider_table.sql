-- ----------------------------------------------------------------------
-- Provider table registrations: add, remove, refresh, list.
-- Table names are stored in londiste.quote_table form (schema.table,
-- quoted only where needed); a name without a schema means public.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.provider_add_table(i_queue_name, i_table_name)
--
--      Registers a table on a queue and starts capturing its changes
--      (londiste.create_capture) in the same transaction.
--
-- Returns:
--      1
--
-- Errors:
--      'no such event queue', 'no such table: <t>', 'need key column'
--      (the Skytools 2 texts; the name is in the DETAIL), and a unique violation
--      when the table is registered already.
--
-- Calls:
--      londiste.resolve_name(i_table_name, 'r'),
--      londiste.create_capture(i_queue_name, table), londiste.quote_table(table)
--
-- Tables directly manipulated:
--      insert - londiste.provider_table
-- ----------------------------------------------------------------------
create or replace function londiste.provider_add_table(i_queue_name text, i_table_name text)
returns integer as $$
declare
    v_oid      oid;
    v_trigger  text;
begin
    perform 1 from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'no such event queue' using detail = format('queue %s', i_queue_name);
    end if;
    v_oid := londiste.resolve_name(i_table_name, 'r');
    if v_oid is null then
        raise exception 'no such table: %', i_table_name;
    end if;
    v_trigger := londiste.create_capture(i_queue_name, v_oid::regclass);
    insert into londiste.provider_table (queue_name, table_name, trigger_name)
    values (i_queue_name, londiste.quote_table(v_oid::regclass), v_trigger);
    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.find_column_types(i_table_name)
--
--      The Skytools 2 column-type string of a table: one letter per live
--      column in column order, k for a primary-key column, v for the
--      others.  It is what the capture logs.
--
-- Returns:
--      the string, e.g. 'kvv'
--
-- Errors:
--      'no such table: <t>'
--
-- Calls:
--      londiste.resolve_name(i_table_name, 'r')
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.find_column_types(i_table_name text)
returns text as $$
declare
    v_oid    oid;
    v_types  text;
begin
    v_oid := londiste.resolve_name(i_table_name, 'r');
    if v_oid is null then
        raise exception 'no such table: %', i_table_name;
    end if;
    select string_agg(case when a.attnum = any (i.indkey) then 'k' else 'v' end, '' order by a.attnum)
      into v_types
      from pg_attribute a
      left join pg_index i on i.indrelid = a.attrelid and i.indisprimary
     where a.attrelid = v_oid and a.attnum > 0 and not a.attisdropped;
    return v_types;
end;
$$ language plpgsql stable;

-- ----------------------------------------------------------------------
-- Function: londiste.provider_add_table(i_queue_name, i_table_name, i_col_types)
--
--      The Skytools 2 form with an explicit column-type string.  The
--      capture logs the primary key as the key and every other column
--      (no 'i': ignored columns are not supported), so the string must be
--      the table's own (londiste.find_column_types); then it is
--      provider_add_table(i_queue_name, i_table_name).
--
-- Returns:
--      1
--
-- Errors:
--      those of provider_add_table; 'column types <s> not supported: ...'
--
-- Calls:
--      londiste.check_column_types(i_table_name, i_col_types),
--      londiste.provider_add_table(i_queue_name, i_table_name)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.provider_add_table(i_queue_name text, i_table_name text, i_col_types text)
returns integer as $$
begin
    perform londiste.check_column_types(i_table_name, i_col_types);
    return londiste.provider_add_table(i_queue_name, i_table_name);
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.check_column_types(i_table_name, i_col_types)  [internal]
--
--      Refuses a column-type string other than the table's own (a table
--      that does not exist is left to the caller's own error).
--
-- Returns:
--      1
--
-- Errors:
--      'column types <s> not supported: ...'
--
-- Calls:
--      londiste.resolve_name(i_table_name, 'r'),
--      londiste.find_column_types(i_table_name)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.check_column_types(i_table_name text, i_col_types text)
returns integer as $$
declare
    v_types  text;
begin
    if londiste.resolve_name(i_table_name, 'r') is null then
        return 1;
    end if;
    v_types := londiste.find_column_types(i_table_name);
    if i_col_types is distinct from v_types then
        raise exception 'column types % not supported: the capture logs the primary key as k and every other column as v (%)',
            coalesce(i_col_types, 'NULL'), v_types;
    end if;
    return 1;
end;
$$ language plpgsql stable;

-- ----------------------------------------------------------------------
-- Function: londiste.provider_remove_table(i_queue_name, i_table_name)
--
--      Stops capturing a table's changes and forgets the registration.
--
-- Returns:
--      1
--
-- Errors:
--      'no such table registered' (the table in the DETAIL)
--
-- Calls:
--      londiste.resolve_name(i_table_name, 'r'), londiste.quote_table(table),
--      londiste.drop_capture(i_queue_name, table)
--
-- Tables directly manipulated:
--      delete - londiste.provider_table
-- ----------------------------------------------------------------------
create or replace function londiste.provider_remove_table(i_queue_name text, i_table_name text)
returns integer as $$
declare
    v_oid  oid;
    v_row  record;
begin
    v_oid := londiste.resolve_name(i_table_name, 'r');
    delete from londiste.provider_table
     where queue_name = i_queue_name
       and table_name = coalesce(londiste.quote_table(v_oid::regclass), i_table_name)
    returning * into v_row;
    if not found then
        raise exception 'no such table registered' using detail = format('table %s', i_table_name);
    end if;
    if v_oid is not null then
        perform londiste.drop_capture(i_queue_name, v_oid::regclass);
    end if;
    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.provider_refresh_trigger(i_queue_name, i_table_name)
--
--      Re-creates a registered table's capture, e.g. after columns were
--      added on the provider.
--
-- Returns:
--      1
--
-- Errors:
--      'no such table registered' (the table in the DETAIL)
--
-- Calls:
--      londiste.resolve_name(i_table_name, 'r'), londiste.quote_table(table),
--      londiste.create_capture(i_queue_name, table)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.provider_refresh_trigger(i_queue_name text, i_table_name text)
returns integer as $$
declare
    v_oid  oid;
begin
    v_oid := londiste.resolve_name(i_table_name, 'r');
    perform 1 from londiste.provider_table
      where queue_name = i_queue_name and table_name = londiste.quote_table(v_oid::regclass);
    if v_oid is null or not found then
        raise exception 'no such table registered' using detail = format('table %s', i_table_name);
    end if;
    perform londiste.create_capture(i_queue_name, v_oid::regclass);
    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.provider_refresh_trigger(i_queue_name, i_table_name, i_col_types)
--
--      The Skytools 2 form with an explicit column-type string, which
--      must be the table's own (see provider_add_table with types).
--
-- Returns:
--      1
--
-- Errors:
--      those of provider_refresh_trigger; 'column types <s> not supported: ...'
--
-- Calls:
--      londiste.check_column_types(i_table_name, i_col_types),
--      londiste.provider_refresh_trigger(i_queue_name, i_table_name)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.provider_refresh_trigger(i_queue_name text, i_table_name text, i_col_types text)
returns integer as $$
begin
    perform londiste.check_column_types(i_table_name, i_col_types);
    return londiste.provider_refresh_trigger(i_queue_name, i_table_name);
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.provider_get_table_list(i_queue_name)
--
-- Returns:
--      (table_name, trigger_name) of the queue's tables, in the order
--      they were added.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.provider_get_table_list(
    in i_queue_name text, out table_name text, out trigger_name text)
returns setof record as $$
    select t.table_name, t.trigger_name
      from londiste.provider_table t
     where t.queue_name = i_queue_name
     order by t.nr;
$$ language sql stable;
