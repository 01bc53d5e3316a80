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
