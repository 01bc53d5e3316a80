-- ----------------------------------------------------------------------
-- Subscriber table registrations and their states.  Names are stored in
-- londiste.canonical_name form.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_add_table(i_queue_name, i_table)
--
--      Registers a table with state NULL (to be copied).  The table's
--      existence is checked by the caller (londiste subscriber add).
--
-- Returns:
--      0
--
-- Errors:
--      a unique violation when the table is registered already.
--
-- Calls:
--      londiste.canonical_name(i_table)
--
-- Tables directly manipulated:
--      insert - londiste.subscriber_table
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_add_table(i_queue_name text, i_table text)
returns integer as $$
begin
    insert into londiste.subscriber_table (queue_name, table_name)
    values (i_queue_name, londiste.canonical_name(i_table));
    return 0;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_remove_table(i_queue_name, i_table)
--
--      Forgets a table; its rows stay.
--
-- Returns:
--      0
--
-- Errors:
--      'no such table' (the table in the DETAIL)
--
-- Calls:
--      londiste.canonical_name(i_table)
--
-- Tables directly manipulated:
--      delete - londiste.subscriber_table
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_remove_table(i_queue_name text, i_table text)
returns integer as $$
begin
    delete from londiste.subscriber_table
     where queue_name = i_queue_name and table_name = londiste.canonical_name(i_table);
    if not found then
        raise exception 'no such table' using detail = format('table %s', i_table);
    end if;
    return 0;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_get_table_list(i_queue_name)
--
-- Returns:
--      (table_name, merge_state, snapshot, trigger_name, skip_truncate),
--      in the order the tables were added.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_get_table_list(
    in i_queue_name text,
    out table_name text, out merge_state text, out snapshot text,
    out trigger_name text, out skip_truncate boolean)
returns setof record as $$
    select t.table_name, t.merge_state, t.snapshot, t.trigger_name, t.skip_truncate
      from londiste.subscriber_table t
     where t.queue_name = i_queue_name
     order by t.nr;
$$ language sql stable;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_set_table_state(i_queue_name, i_table,
--                                               i_snapshot, i_merge_state)
--
--      Sets a table's state and snapshot (both always overwritten with
--      the arguments).  State 'ok' also clears skip_truncate; any state
--      set here clears a recorded error.
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
--      'no such table' (the table in the DETAIL)
--
-- Calls:
--      londiste.canonical_name(i_table)
--
-- Tables directly manipulated:
--      update - londiste.subscriber_table
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_set_table_state(
    i_queue_name text, i_table text, i_snapshot text, i_merge_state text)
returns integer as $$
begin
    update londiste.subscriber_table
       set snapshot = i_snapshot,
           merge_state = i_merge_state,
           skip_truncate = case when i_merge_state = 'ok' then null else skip_truncate end,
           last_error = null,
           error_time = null,
           -- the machine's snapshot is rebuilt from the text; writers that
           -- read the old version re-read (compare-and-set)
           sync_state = null,
           sync_version = sync_version + 1
     where queue_name = i_queue_name and table_name = londiste.canonical_name(i_table);
    if not found then
        raise exception 'no such table' using detail = format('table %s', i_table);
    end if;
    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_set_skip_truncate(i_queue_name, i_table, i_value)
--
--      With true, the initial copy keeps the subscriber's rows instead of
--      truncating the table first.
--
-- Returns:
--      1
--
-- Errors:
--      'no such table' (the table in the DETAIL)
--
-- Calls:
--      londiste.canonical_name(i_table)
--
-- Tables directly manipulated:
--      update - londiste.subscriber_table
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_set_skip_truncate(
    i_queue_name text, i_table text, i_value boolean)
returns integer as $$
begin
    update londiste.subscriber_table
       set skip_truncate = i_value
     where queue_name = i_queue_name and table_name = londiste.canonical_name(i_table);
    if not found then
        raise exception 'no such table' using detail = format('table %s', i_table);
    end if;
    return 1;
end;
$$ language plpgsql;
