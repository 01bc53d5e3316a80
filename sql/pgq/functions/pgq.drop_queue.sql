-- ----------------------------------------------------------------------
-- Function: pgq.drop_queue(i_queue_name)
--
--      Drops a queue with its event tables, ticks and sequences.
--
-- Parameters:
--      i_queue_name - queue to drop
--
-- Returns:
--      1
--
-- Errors:
--      'Invalid NULL value', 'No such event queue',
--      'cannot drop queue, consumers still attached'
--
-- Calls:
--      pgq.ticker_lock(queue_id)
--
-- Tables directly manipulated:
--      delete - pgq.tick, pgq.queue
--      drop - pgq.event_<id> with its slot tables, pgq.event_<id>_id_seq,
--             pgq.event_<id>_tick_seq
-- ----------------------------------------------------------------------
create or replace function pgq.drop_queue(i_queue_name text)
returns integer as $$
declare
    v_qid  int4;
begin
    if i_queue_name is null then
        raise exception 'Invalid NULL value';
    end if;

    select queue_id into v_qid from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'No such event queue';
    end if;
    -- Take the queue's ticker lock first, as pgq.ticker does: a tick in
    -- progress finishes before the drop, instead of the two deadlocking
    -- over the queue row and the event sequence.
    perform pgq.ticker_lock(v_qid);
    perform 1 from pgq.queue where queue_id = v_qid for update;
    if not found then
        raise exception 'No such event queue';
    end if;

    perform 1 from pgq.subscription where sub_queue = v_qid;
    if found then
        raise exception 'cannot drop queue, consumers still attached';
    end if;

    execute format('drop table pgq.%I', 'event_' || v_qid);
    delete from pgq.tick where tick_queue = v_qid;
    delete from pgq.queue where queue_id = v_qid;
    execute format('drop sequence pgq.%I', 'event_' || v_qid || '_id_seq');
    execute format('drop sequence pgq.%I', 'event_' || v_qid || '_tick_seq');
    return 1;
end;
$$ language plpgsql;
