-- ----------------------------------------------------------------------
-- Function: pgq.insert_event_raw(queue_name, ev_id, ev_time, ev_owner,
--                                ev_retry, ev_type, ev_data,
--                                ev_extra1, ev_extra2, ev_extra3, ev_extra4)
--
--      Stores one event in the queue's current slot table, tagged with the
--      inserting transaction's txid.  Always advances the queue's event
--      sequence, even when ev_id is given: the ticker counts new events by
--      that sequence.
--
--      The txid is taken before queue_cur_table is read.  That makes every
--      event that lands in a slot table which is no longer current carry a
--      txid below the rotation's queue_switch_step2, which is what
--      pgq.batch_event_tables and the rotation guard rely on (PostgreSQL
--      assigns txids lazily, so without this a transaction could read the
--      old slot number and obtain its txid long after the rotation).
--      Outside READ COMMITTED the queue row is read FOR SHARE, since the
--      transaction snapshot could show a slot number from before a
--      rotation; such a producer gets a serialization failure and retries.
--
-- Parameters:
--      queue_name - queue to insert into
--      ev_id      - event id, NULL for a new one
--      ev_time    - event time
--      ev_owner   - subscription id the event is for, NULL for everybody
--      ev_retry   - retry count, NULL on first delivery
--      ev_type, ev_data, ev_extra1..4 - payload
--
-- Returns:
--      The event id.
--
-- Errors:
--      'No such queue'; SQLSTATE 40001 for a REPEATABLE READ/SERIALIZABLE
--      producer whose snapshot predates a rotation (retry the transaction)
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      insert - pgq.event_<id>_<n> (through pgq.event_template)
-- ----------------------------------------------------------------------
create or replace function pgq.insert_event_raw(
    queue_name text, ev_id bigint, ev_time timestamptz,
    ev_owner integer, ev_retry integer, ev_type text, ev_data text,
    ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text)
returns bigint as $$
declare
    v_txid  xid8;
    v_qid   int4;
    v_slot  int4;
    v_id    int8;
begin
    v_txid := pg_current_xact_id();

    if current_setting('transaction_isolation') = 'read committed' then
        select q.queue_id, q.queue_cur_table, nextval(q.queue_event_seq)
          into v_qid, v_slot, v_id
          from pgq.queue q
         where q.queue_name = $1;
    else
        -- A REPEATABLE READ or SERIALIZABLE snapshot may predate a
        -- rotation and show an old slot.  Locking the row reads its
        -- latest version: a rotation committed after our snapshot makes
        -- this fail with a serialization error (the producer retries),
        -- and a later rotation waits for our commit.
        select q.queue_id, q.queue_cur_table, nextval(q.queue_event_seq)
          into v_qid, v_slot, v_id
          from pgq.queue q
         where q.queue_name = $1
           for share;
    end if;
    if not found then
        raise exception 'No such queue';
    end if;

    insert into pgq.event_template
        (ev_id, ev_time, ev_txid, ev_owner, ev_retry, ev_type, ev_data,
         ev_extra1, ev_extra2, ev_extra3, ev_extra4, ev_queue, ev_slot)
    values
        (coalesce($2, v_id), $3, v_txid, $4, $5, $6, $7,
         $8, $9, $10, $11, v_qid, v_slot);

    return coalesce($2, v_id);
end;
$$ language plpgsql;
