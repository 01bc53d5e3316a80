-- ----------------------------------------------------------------------
-- Subscriber table details beyond Skytools 2's table list: where a table's
-- changes go (table redirection) and why replay stopped applying it.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_get_table_info(i_queue_name)
--
-- Returns:
--      One row per registered table, in add order: the columns of
--      londiste.subscriber_get_table_list, plus dest_table (the
--      subscriber table written; table_name when not redirected),
--      last_error and error_time (merge_state 'error').
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_get_table_info(
    in i_queue_name text,
    out table_name text, out merge_state text, out snapshot text,
    out skip_truncate boolean, out dest_table text,
    out last_error text, out error_time timestamptz)
returns setof record as $$
    select t.table_name, t.merge_state, t.snapshot, t.skip_truncate,
           coalesce(t.dest_table, t.table_name), t.last_error, t.error_time
      from londiste.subscriber_table t
     where t.queue_name = i_queue_name
     order by t.nr;
$$ language sql stable;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_set_dest_table(i_queue_name, i_table, i_dest)
--
--      Sends a table's changes to another subscriber table (NULL: the
--      same name).  Stored in canonical form.
--
-- Returns:
--      1
--
-- Errors:
--      'no such table: <t>', 'bad name: <dest>'
--
-- Calls:
--      londiste.canonical_name(i_table), londiste.canonical_name(i_dest)
--
-- Tables directly manipulated:
--      update - londiste.subscriber_table
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_set_dest_table(
    i_queue_name text, i_table text, i_dest text)
returns integer as $$
declare
    v_dest text := londiste.canonical_name(i_dest);
begin
    update londiste.subscriber_table
       set dest_table = nullif(v_dest, table_name)
     where queue_name = i_queue_name and table_name = londiste.canonical_name(i_table);
    if not found then
        raise exception 'no such table: %', i_table;
    end if;
    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_set_table_error(i_queue_name, i_table, i_message)
--
--      Stops applying one table: state 'error' with the reason.  The
--      other tables go on; `subscriber resync` brings it back.
--
--      Compatibility only (Skytools scripts and hand repairs): it skips
--      the table-sync machine's guards and writes no londiste.sync_outbox
--      entry, so nobody hears of the change.  No service calls it; they
--      change states through shared/londiste/sync-store.ts.
--
-- Returns:
--      1
--
-- Errors:
--      'no such table: <t>'
--
-- Calls:
--      londiste.canonical_name(i_table)
--
-- Tables directly manipulated:
--      update - londiste.subscriber_table
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_set_table_error(
    i_queue_name text, i_table text, i_message text)
returns integer as $$
begin
    update londiste.subscriber_table
       set merge_state = 'error',
           last_error = i_message,
           error_time = now(),
           sync_state = null,
           sync_version = sync_version + 1
     where queue_name = i_queue_name and table_name = londiste.canonical_name(i_table);
    if not found then
        raise exception 'no such table: %', i_table;
    end if;
    return 1;
end;
$$ language plpgsql;
