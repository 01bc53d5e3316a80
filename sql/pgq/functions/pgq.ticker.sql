-- ----------------------------------------------------------------------
-- Ticking.  A tick records a snapshot; batch N holds the events whose
-- transactions became visible between tick N-1 and tick N.  Tick
-- snapshots must therefore never go backwards as tick ids grow.  Every
-- form below takes a per-queue advisory lock first and reads the snapshot
-- in a later statement, so a ticker that waited for another one sees that
-- one's tick as committed: two tickers can run at once without producing
-- an older snapshot under a newer tick id.  This needs READ COMMITTED
-- (a REPEATABLE READ transaction keeps its first snapshot).
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: pgq.insert_tick(i_queue_id, i_tick_id)  [internal]
--
--      Inserts a tick for a queue whose ticker lock is held, after checking
--      that its snapshot does not go back behind the previous tick.
--
-- Returns:
--      The tick id.
--
-- Errors:
--      'Invalid PgQ state: ...' when the snapshot would go backwards.
--
-- Calls:
--      pgq.seq_getval(queue_event_seq)
--
-- Tables directly manipulated:
--      insert - pgq.tick
-- ----------------------------------------------------------------------
create or replace function pgq.insert_tick(i_queue_id int4, i_tick_id int8)
returns int8 as $$
declare
    v_snap  pg_snapshot;
    v_last  pg_snapshot;
    v_seq   int8;
begin
    v_snap := pg_current_snapshot();

    select q.event_seq into v_seq
      from (select pgq.seq_getval(queue_event_seq) as event_seq
              from pgq.queue where queue_id = i_queue_id) q;

    select tick_snapshot into v_last
      from pgq.tick where tick_queue = i_queue_id
     order by tick_queue desc, tick_id desc limit 1;
    if found then
        if pg_snapshot_xmax(v_snap) < pg_snapshot_xmax(v_last)
           or pg_snapshot_xmin(v_snap) < pg_snapshot_xmin(v_last)
           or exists (select 1 from pg_snapshot_xip(v_snap) x
                       where pg_visible_in_snapshot(x, v_last))
        then
            raise exception 'Invalid PgQ state: new tick snapshot % is older than previous tick snapshot %',
                v_snap, v_last;
        end if;
    end if;

    insert into pgq.tick (tick_queue, tick_id, tick_time, tick_snapshot, tick_event_seq)
    values (i_queue_id, i_tick_id, clock_timestamp(), v_snap, v_seq);
    return i_tick_id;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.ticker_lock(i_queue_id)  [internal]
--
--      Takes the queue's ticker lock for the rest of the transaction.
--
-- Errors:
--      when not in READ COMMITTED.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.ticker_lock(i_queue_id int4)
returns void as $$
begin
    if current_setting('transaction_isolation') <> 'read committed' then
        raise exception 'pgq ticker must run in READ COMMITTED isolation, not %',
            current_setting('transaction_isolation');
    end if;
    perform pg_advisory_xact_lock(1886482801, i_queue_id);
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.ticker(i_queue_name)
--
--      Inserts a tick now, as Skytools 2 did: whoever calls it decides
--      when a tick is wanted.  The ticker service does not call this; it
--      calls pgq.tick_if_due, which holds the policy of when a tick is due.
--      A queue whose ticker is paused (queue_ticker_paused) is not ticked.
--
-- Parameters:
--      i_queue_name - queue to tick
--
-- Returns:
--      The new tick id; NULL only when the queue's ticker is paused.
--
-- Errors:
--      'no such queue', 'This queue has external tick source.'
--
-- Calls:
--      pgq.ticker_lock(queue_id), pgq.insert_tick(queue_id, tick_id)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.ticker(i_queue_name text)
returns bigint as $$
declare
    v_q  record;
begin
    select queue_id, queue_external_ticker into v_q
      from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'no such queue';
    end if;
    if v_q.queue_external_ticker then
        raise exception 'This queue has external tick source.';
    end if;

    perform pgq.ticker_lock(v_q.queue_id);

    -- Re-read under the lock: the settings may have changed while waiting.
    select queue_id, queue_tick_seq, queue_ticker_paused into v_q
      from pgq.queue where queue_id = v_q.queue_id;
    if v_q.queue_ticker_paused then
        return null;
    end if;
    return pgq.insert_tick(v_q.queue_id, nextval(v_q.queue_tick_seq));
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.ticker()
--
--      Runs pgq.ticker(queue) for every queue that is not ticked
--      externally and not paused: each gets a tick now.
--
-- Returns:
--      Number of queues that got a tick.
--
-- Calls:
--      pgq.ticker(i_queue_name)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.ticker()
returns bigint as $$
declare
    v_name   text;
    v_count  int8 := 0;
begin
    for v_name in
        select queue_name from pgq.queue
         where not queue_external_ticker and not queue_ticker_paused
         order by queue_id
    loop
        if pgq.ticker(v_name) is not null then
            v_count := v_count + 1;
        end if;
    end loop;
    return v_count;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.tick_if_due(i_queue_name)
--
--      Ticks the queue when a tick is due (the PgQ 3 policy; the ticker
--      service calls this every loop_delay):
--        * new events (by the event sequence): when at least
--          queue_ticker_max_count arrived or queue_ticker_max_lag passed
--          since the last tick;
--        * no new events: at least max_lag/2 after the last tick and,
--          slowing down, only when the time since the last tick is twice
--          the previous interval or queue_ticker_idle_period has passed;
--        * a queue with a single tick is always ticked.
--      pgq.force_tick makes the next call tick.
--
-- Parameters:
--      i_queue_name - queue to tick
--
-- Returns:
--      The new tick id, NULL when no tick was due (or the queue's ticker
--      is paused).
--
-- Errors:
--      'no such queue', 'This queue has external tick source.'
--
-- Calls:
--      pgq.ticker_lock(queue_id), pgq.seq_getval(queue_event_seq),
--      pgq.insert_tick(queue_id, tick_id)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.tick_if_due(i_queue_name text)
returns bigint as $$
declare
    v_q       record;
    v_last    record;
    v_before  timestamptz;
    v_lag     interval;
begin
    select queue_id, queue_external_ticker into v_q
      from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'no such queue';
    end if;
    if v_q.queue_external_ticker then
        raise exception 'This queue has external tick source.';
    end if;

    perform pgq.ticker_lock(v_q.queue_id);

    select queue_id, queue_tick_seq, queue_ticker_paused,
           queue_ticker_max_count, queue_ticker_max_lag, queue_ticker_idle_period,
           pgq.seq_getval(queue_event_seq) as event_seq
      into v_q
      from pgq.queue where queue_id = v_q.queue_id;
    if v_q.queue_ticker_paused then
        return null;
    end if;

    select tick_id, tick_time, tick_event_seq into v_last
      from pgq.tick where tick_queue = v_q.queue_id
     order by tick_queue desc, tick_id desc limit 1;
    select tick_time into v_before
      from pgq.tick
     where tick_queue = v_q.queue_id and tick_id < v_last.tick_id
     order by tick_queue desc, tick_id desc limit 1;
    -- A queue with a single tick (just created) is always ticked.
    if found then
        v_lag := clock_timestamp() - v_last.tick_time;
        if v_q.event_seq <> v_last.tick_event_seq then
            if v_q.event_seq - v_last.tick_event_seq < v_q.queue_ticker_max_count
               and v_lag < v_q.queue_ticker_max_lag
            then
                return null;
            end if;
        else
            if v_lag < v_q.queue_ticker_max_lag / 2
               or (v_lag < (v_last.tick_time - v_before) * 2
                   and v_lag < v_q.queue_ticker_idle_period)
            then
                return null;
            end if;
        end if;
    end if;

    return pgq.insert_tick(v_q.queue_id, nextval(v_q.queue_tick_seq));
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.tick_if_due()
--
--      Runs pgq.tick_if_due(queue) for every queue that is not ticked
--      externally and not paused.
--
-- Returns:
--      Number of queues that got a tick.
--
-- Calls:
--      pgq.tick_if_due(i_queue_name)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.tick_if_due()
returns bigint as $$
declare
    v_name   text;
    v_count  int8 := 0;
begin
    for v_name in
        select queue_name from pgq.queue
         where not queue_external_ticker and not queue_ticker_paused
         order by queue_id
    loop
        if pgq.tick_if_due(v_name) is not null then
            v_count := v_count + 1;
        end if;
    end loop;
    return v_count;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.ticker(i_queue_name, i_tick_id)
--
--      Inserts a tick with the given id into a queue that has an
--      external tick source.
--
-- Returns:
--      The tick id.
--
-- Errors:
--      'queue not found' (also for queues ticked by pgq.ticker)
--
-- Calls:
--      pgq.ticker_lock(queue_id), pgq.insert_tick(queue_id, i_tick_id)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.ticker(i_queue_name text, i_tick_id bigint)
returns bigint as $$
declare
    v_qid  int4;
begin
    select queue_id into v_qid
      from pgq.queue
     where queue_name = i_queue_name and queue_external_ticker;
    if not found then
        raise exception 'queue not found';
    end if;
    perform pgq.ticker_lock(v_qid);
    return pgq.insert_tick(v_qid, i_tick_id);
end;
$$ language plpgsql;
