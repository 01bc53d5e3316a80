-- ----------------------------------------------------------------------
-- Function: pgq.event_retry(x_batch_id, x_event_id, x_retry_time)
--
--      Puts an event of an open batch into the retry queue: it comes back
--      to this consumer only, with ev_retry increased, once x_retry_time
--      has passed and the retry mover (pgq.maint_retry_events) has run.
--
--      The event is looked up within the batch, which costs a scan of the
--      batch; a consumer that has the event at hand can use
--      pgq.event_retry_raw instead.
--
-- Parameters:
--      x_batch_id   - an open batch
--      x_event_id   - event id
--      x_retry_time - when to redeliver
--
-- Returns:
--      1 when queued, 0 when it was already queued.
--
-- Errors:
--      'batch not found', 'event not found'
--
-- Calls:
--      pgq.batch_event_sql(x_batch_id)
--
-- Tables directly manipulated:
--      insert - pgq.retry_queue
-- ----------------------------------------------------------------------
create or replace function pgq.event_retry(
    x_batch_id bigint, x_event_id bigint, x_retry_time timestamptz)
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

    insert into pgq.retry_queue (ev_retry_after, ev_id, ev_time, ev_txid, ev_owner,
                                 ev_retry, ev_type, ev_data,
                                 ev_extra1, ev_extra2, ev_extra3, ev_extra4)
    values (x_retry_time, v_ev.ev_id, v_ev.ev_time, null, v_sub_id,
            coalesce(v_ev.ev_retry, 0) + 1, v_ev.ev_type, v_ev.ev_data,
            v_ev.ev_extra1, v_ev.ev_extra2, v_ev.ev_extra3, v_ev.ev_extra4)
    on conflict (ev_owner, ev_id) do nothing;
    get diagnostics v_rows = row_count;
    return v_rows;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.event_retry(x_batch_id, x_event_id, x_retry_seconds)
--
--      As above, redelivering after x_retry_seconds.
--
-- Calls:
--      pgq.event_retry(x_batch_id, x_event_id, x_retry_time)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.event_retry(
    x_batch_id bigint, x_event_id bigint, x_retry_seconds integer)
returns integer as $$
    select pgq.event_retry(x_batch_id, x_event_id,
                           now() + x_retry_seconds * interval '1 second');
$$ language sql;
