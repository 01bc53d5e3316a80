-- ----------------------------------------------------------------------
-- Function: londiste.provider_notify_change(i_queue_name)
--
--      Tells the queue's subscribers which tables the provider still
--      captures: one 'T' event whose ev_data is the complete table list
--      as a text[] literal (not comma-joined as in Skytools: quoted
--      names may contain commas).  Sent after a table is removed; a
--      subscriber drops from its set the tables in neither this list nor
--      the provider's current one (so a stale event cannot remove a
--      table added since).
--
-- Returns:
--      The event id.
--
-- Calls:
--      pgq.insert_event(i_queue_name, 'T', ...)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.provider_notify_change(i_queue_name text)
returns bigint as $$
begin
    -- plpgsql, not sql: a subscriber-only database has no pgq schema, and
    -- an sql function's body would be checked against it at install.
    return pgq.insert_event(i_queue_name, 'T',
               coalesce((select array_agg(table_name order by nr)
                           from londiste.provider_table
                          where queue_name = i_queue_name), '{}')::text,
               null, null, null, null);
end;
$$ language plpgsql;
