-- ----------------------------------------------------------------------
-- Function: pgq.get_batch_events(x_batch_id)
--
--      All events of a batch, in ev_id order.  Repeatable while the batch
--      is open.  A batch may be empty; it must still be finished.
--      For large batches use pgq.get_batch_cursor or run
--      pgq.batch_event_sql through a cursor.
--
-- Parameters:
--      x_batch_id - an open batch
--
-- Returns:
--      (ev_id, ev_time, ev_txid, ev_retry, ev_type, ev_data,
--       ev_extra1, ev_extra2, ev_extra3, ev_extra4)
--
-- Errors:
--      'batch not found'
--
-- Calls:
--      pgq.batch_event_sql(x_batch_id)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.get_batch_events(
    in x_batch_id bigint,
    out ev_id bigint, out ev_time timestamptz, out ev_txid bigint,
    out ev_retry int4, out ev_type text, out ev_data text,
    out ev_extra1 text, out ev_extra2 text, out ev_extra3 text, out ev_extra4 text)
returns setof record as $$
begin
    return query execute pgq.batch_event_sql(x_batch_id);
end;
$$ language plpgsql stable;
