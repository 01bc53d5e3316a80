-- ----------------------------------------------------------------------
-- Function: pgq.get_batch_cursor(i_batch_id, i_cursor_name, i_quick_limit)
--
--      Opens a cursor over a batch's events and returns the first
--      i_quick_limit of them.  When that many came back, the cursor stays
--      open in the calling transaction under i_cursor_name and the rest is
--      read with FETCH; otherwise it is already closed.  Memory stays flat
--      whatever the batch size.
--
-- Parameters:
--      i_batch_id    - an open batch
--      i_cursor_name - name for the cursor
--      i_quick_limit - rows to return directly
--
-- Returns:
--      Same columns as pgq.get_batch_events.
--
-- Errors:
--      'batch not found'
--
-- Calls:
--      pgq.batch_event_sql(i_batch_id)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.get_batch_cursor(
    in i_batch_id bigint, in i_cursor_name text, in i_quick_limit int4,
    out ev_id bigint, out ev_time timestamptz, out ev_txid bigint,
    out ev_retry int4, out ev_type text, out ev_data text,
    out ev_extra1 text, out ev_extra2 text, out ev_extra3 text, out ev_extra4 text)
returns setof record as $$
declare
    v_cur   refcursor;
    v_rows  int4 := 0;
begin
    v_cur := i_cursor_name;
    open v_cur no scroll for execute pgq.batch_event_sql(i_batch_id);
    while v_rows < i_quick_limit loop
        fetch v_cur into ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data,
                         ev_extra1, ev_extra2, ev_extra3, ev_extra4;
        exit when not found;
        v_rows := v_rows + 1;
        return next;
    end loop;
    if v_rows < i_quick_limit then
        close v_cur;
    end if;
end;
$$ language plpgsql;
