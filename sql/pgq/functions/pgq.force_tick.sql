-- ----------------------------------------------------------------------
-- Function: pgq.force_tick(i_queue_name)
--
--      Makes the ticker tick the queue at its next check, by moving the
--      event sequence ahead by twice queue_ticker_max_count.  Tools that
--      need a tick call this and poll until the last tick id changes,
--      instead of ticking themselves.
--
-- Parameters:
--      i_queue_name - queue name
--
-- Returns:
--      The queue's current last tick id.
--
-- Errors:
--      'queue not found or ticks not allowed'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.force_tick(i_queue_name text)
returns bigint as $$
declare
    v_q     record;
    v_tick  int8;
begin
    select queue_id, queue_event_seq, queue_ticker_max_count into v_q
      from pgq.queue
     where queue_name = i_queue_name and not queue_external_ticker;
    if not found then
        raise exception 'queue not found or ticks not allowed';
    end if;

    select tick_id into v_tick
      from pgq.tick where tick_queue = v_q.queue_id
     order by tick_queue desc, tick_id desc limit 1;

    -- Two force_ticks must not interleave their nextval and setval: the
    -- later setval would move the sequence back and producers would get
    -- event ids twice.  Serialised, the sequence only moves forward.
    perform pg_advisory_xact_lock(1886482803, v_q.queue_id);
    perform setval(v_q.queue_event_seq,
                   nextval(v_q.queue_event_seq) + 2 * v_q.queue_ticker_max_count);
    return v_tick;
end;
$$ language plpgsql;
