-- ----------------------------------------------------------------------
-- A tick whose snapshot is the calling transaction's own snapshot: the
-- consistent point of compare/repair without locking any table.
--
-- The caller (provider side), in this order:
--   1. select pg_advisory_lock(1886482801, <queue_id>)   -- session level:
--      the ticker's per-queue lock (pgq.ticker_lock), so no other tick
--      is inserted until step 5; taken BEFORE the transaction's snapshot,
--      so every earlier tick is visible to it;
--   2. begin isolation level repeatable read; select pg_export_snapshot();
--   3. on a second connection: begin isolation level repeatable read read
--      only; set transaction snapshot '<id>';   -- reads the tables
--   4. select londiste.tick_at_snapshot(<queue>[, <tick id>]); commit;
--   5. select pg_advisory_unlock(1886482801, <queue_id>).
-- pgq.insert_tick records pg_current_snapshot(), which in REPEATABLE READ
-- is the transaction snapshot: the one the second connection imported.
-- So the tables it reads are exactly the state after every batch up to
-- the new tick.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.tick_at_snapshot(i_queue_name, i_tick_id)
--
--      Inserts a tick of the queue recording this transaction's snapshot.
--
-- Parameters:
--      i_queue_name - the queue
--      i_tick_id    - the tick id, reserved by the caller with
--                     nextval(queue_tick_seq) while holding the ticker
--                     lock; NULL takes the next value now
--
-- Returns:
--      The tick id.
--
-- Errors:
--      'no such queue', 'This queue has external tick source.',
--      when not in REPEATABLE READ, when this session does not hold the
--      queue's ticker lock (pg_locks cannot tell when it was taken, nor a
--      session lock from a transaction one: taking it before the
--      transaction's first statement is the caller's part; taken later, a
--      tick committed in between would be invisible here and the new tick
--      could carry an older snapshot under a newer id),
--      when i_tick_id is not after the last tick or
--      was not handed out by the queue's tick sequence, and
--      pgq.insert_tick's 'Invalid PgQ state: ...' when the snapshot is
--      older than the previous tick's.
--
-- Calls:
--      pgq.seq_getval(queue_tick_seq), pgq.insert_tick(queue_id, tick_id)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.tick_at_snapshot(i_queue_name text, i_tick_id int8 default null)
returns int8 as $$
declare
    v_q     record;
    v_last  int8;
    v_tick  int8;
begin
    if current_setting('transaction_isolation') <> 'repeatable read' then
        raise exception 'londiste.tick_at_snapshot must run in REPEATABLE READ, not %',
            current_setting('transaction_isolation');
    end if;

    select queue_id, queue_tick_seq, queue_external_ticker into v_q
      from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'no such queue';
    end if;
    if v_q.queue_external_ticker then
        raise exception 'This queue has external tick source.';
    end if;

    -- pg_locks is not MVCC: it shows the locks held right now.
    if not exists (select 1 from pg_catalog.pg_locks l
                    where l.locktype = 'advisory'
                      and l.pid = pg_catalog.pg_backend_pid()
                      and l.database = (select d.oid from pg_catalog.pg_database d
                                         where d.datname = pg_catalog.current_database())
                      and l.classid = 1886482801
                      and l.objid = v_q.queue_id
                      and l.objsubid = 2
                      and l.mode = 'ExclusiveLock'
                      and l.granted)
    then
        raise exception 'londiste.tick_at_snapshot: this session must hold the ticker lock of queue % '
                        '(pg_advisory_lock(1886482801, %)), taken before the transaction began',
            i_queue_name, v_q.queue_id;
    end if;

    select tick_id into v_last
      from pgq.tick where tick_queue = v_q.queue_id
     order by tick_queue desc, tick_id desc limit 1;

    if i_tick_id is null then
        v_tick := nextval(v_q.queue_tick_seq);
    else
        if v_last is not null and i_tick_id <= v_last then
            raise exception 'londiste.tick_at_snapshot: tick id % is not after the last tick %', i_tick_id, v_last;
        end if;
        if i_tick_id > pgq.seq_getval(v_q.queue_tick_seq) then
            raise exception 'londiste.tick_at_snapshot: tick id % was not handed out by %', i_tick_id, v_q.queue_tick_seq;
        end if;
        v_tick := i_tick_id;
    end if;

    return pgq.insert_tick(v_q.queue_id, v_tick);
end;
$$ language plpgsql;
