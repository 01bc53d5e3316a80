-- ----------------------------------------------------------------------
-- Function: pgq.event_retry_raw(x_queue, x_consumer, x_retry_after,
--                               x_ev_id, x_ev_time, x_ev_retry, x_ev_type,
--                               x_ev_data, x_ev_extra1, x_ev_extra2,
--                               x_ev_extra3, x_ev_extra4)
--
--      Puts an event, given in full, into a consumer's retry queue.  Used
--      by consumers that hold the event already (no batch lookup) and to
--      create events for one consumer only.
--
-- Parameters:
--      x_queue, x_consumer - the subscription
--      x_retry_after       - when to deliver
--      x_ev_id             - event id, NULL for a new one
--      x_ev_time           - event time
--      x_ev_retry          - retry count so far (stored + 1)
--      x_ev_type .. x_ev_extra4 - payload
--
-- Returns:
--      The event id.  An event already in the retry queue is left as it is.
--
-- Errors:
--      'consumer not registered'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      insert - pgq.retry_queue
-- ----------------------------------------------------------------------
create or replace function pgq.event_retry_raw(
    x_queue text, x_consumer text, x_retry_after timestamptz,
    x_ev_id bigint, x_ev_time timestamptz, x_ev_retry integer,
    x_ev_type text, x_ev_data text, x_ev_extra1 text, x_ev_extra2 text,
    x_ev_extra3 text, x_ev_extra4 text)
returns bigint as $$
declare
    v_sub  record;
    v_id   int8;
begin
    select s.sub_id, q.queue_event_seq into v_sub
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = x_queue and c.co_name = x_consumer;
    if not found then
        raise exception 'consumer not registered';
    end if;

    v_id := coalesce(x_ev_id, nextval(v_sub.queue_event_seq));

    insert into pgq.retry_queue (ev_retry_after, ev_id, ev_time, ev_txid, ev_owner,
                                 ev_retry, ev_type, ev_data,
                                 ev_extra1, ev_extra2, ev_extra3, ev_extra4)
    values (x_retry_after, v_id, coalesce(x_ev_time, now()), null, v_sub.sub_id,
            coalesce(x_ev_retry, 0) + 1, x_ev_type, x_ev_data,
            x_ev_extra1, x_ev_extra2, x_ev_extra3, x_ev_extra4)
    on conflict (ev_owner, ev_id) do nothing;
    return v_id;
end;
$$ language plpgsql;
