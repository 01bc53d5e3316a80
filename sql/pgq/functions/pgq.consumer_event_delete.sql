-- ----------------------------------------------------------------------
-- Function: pgq.consumer_event_delete(i_queue_name, i_consumer_name, i_event_id)
--
--      Deletes one event waiting in a consumer's retry queue or failed
--      queue (pgqadm del-event).  Events in the queue's event tables are
--      shared by all consumers and cannot be deleted one by one.
--
-- Returns:
--      Number of rows deleted (1, or 2 when the event was in both).
--
-- Errors:
--      'no such queue/consumer', 'event not found'
--
-- Calls:
--      pgq.failed_subscription(i_queue_name, i_consumer_name)
--
-- Tables directly manipulated:
--      delete - pgq.retry_queue, pgq.failed_queue
-- ----------------------------------------------------------------------
create or replace function pgq.consumer_event_delete(
    i_queue_name text, i_consumer_name text, i_event_id bigint)
returns integer as $$
declare
    v_sub_id  int4;
    v_rows    int4;
    v_total   int4;
begin
    v_sub_id := pgq.failed_subscription(i_queue_name, i_consumer_name);
    delete from pgq.retry_queue where ev_owner = v_sub_id and ev_id = i_event_id;
    get diagnostics v_total = row_count;
    delete from pgq.failed_queue where ev_owner = v_sub_id and ev_id = i_event_id;
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;
    if v_total = 0 then
        raise exception 'event not found';
    end if;
    return v_total;
end;
$$ language plpgsql;
