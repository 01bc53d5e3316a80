-- ----------------------------------------------------------------------
-- Function: pgq.event_failed(x_batch_id, x_event_id, x_reason)
--
--      Copies an event of an open batch into the failed queue, where it
--      waits for pgq.failed_event_retry or pgq.failed_event_delete.
--
-- Parameters:
--      x_batch_id - an open batch
--      x_event_id - event id
--      x_reason   - text kept with the event
--
-- Returns:
--      1 when stored, 0 when it was already there.
--
-- Errors:
--      'batch not found', 'event not found'
--
-- Calls:
--      pgq.batch_event_sql(x_batch_id)
--
-- Tables directly manipulated:
--      insert - pgq.failed_queue
-- ----------------------------------------------------------------------
create or replace function pgq.event_failed(
    x_batch_id bigint, x_event_id bigint, x_reason text)
returns integer as $$
declare
    v_sub_id  int4;
    v_ev      record;
    v_rows    int4;
begin
    select sub_id into v_sub_id from pgq.subscription where sub_batch = x_batch_id;
    if not found then
        raise exception 'batch not found';
    end if;

    execute 'select * from (' || pgq.batch_event_sql(x_batch_id) || ') ev where ev.ev_id = $1'
       into v_ev using x_event_id;
    if v_ev.ev_id is null then
        raise exception 'event not found';
    end if;

    insert into pgq.failed_queue (ev_failed_reason, ev_failed_time,
                                  ev_id, ev_time, ev_txid, ev_owner, ev_retry,
                                  ev_type, ev_data,
                                  ev_extra1, ev_extra2, ev_extra3, ev_extra4)
    values (x_reason, now(), v_ev.ev_id, v_ev.ev_time, null, v_sub_id,
            coalesce(v_ev.ev_retry, 0), v_ev.ev_type, v_ev.ev_data,
            v_ev.ev_extra1, v_ev.ev_extra2, v_ev.ev_extra3, v_ev.ev_extra4)
    on conflict (ev_owner, ev_id) do nothing;
    get diagnostics v_rows = row_count;
    return v_rows;
end;
$$ language plpgsql;
