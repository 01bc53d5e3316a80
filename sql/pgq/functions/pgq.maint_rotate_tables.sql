-- ----------------------------------------------------------------------
-- Function: pgq.maint_rotate_tables_step1(i_queue_name)
--
--      Switches the queue to its next slot table, emptying it first, once
--      queue_rotation_period has passed since the last switch and that
--      switch was confirmed by step 2.
--
--      Rotation guard: every consumer's position (its last tick) must have
--      an xmin above the last switch's step2.  Then every event in the
--      slot tables other than the current one is visible at every
--      consumer's position, i.e. already consumed.  A consumer that still
--      sits on the first tick, or whose tick has vanished, blocks the
--      rotation too.  Run pgq.maint_rotate_tables_step2 in a later
--      transaction.
--
-- Parameters:
--      i_queue_name - queue name
--
-- Returns:
--      1 when rotated, 0 when not due, held back by a consumer, the
--      queue row was locked by a producer, or the slot table was busy
--      (WARNING).
--
-- Errors:
--      'No such event queue'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      truncate - pgq.event_<id>_<n> (the next slot table)
--      update - pgq.queue
--      delete - pgq.tick
-- ----------------------------------------------------------------------
create or replace function pgq.maint_rotate_tables_step1(i_queue_name text)
returns integer as $$
declare
    v_q      record;
    v_slot   int4;
    v_table  text;
    v_keep   int8;
begin
    perform 1 from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'No such event queue';
    end if;
    -- NO KEY UPDATE: ticks (which reference the queue row) are not held
    -- up.  NOWAIT: a REPEATABLE READ producer holds the row FOR SHARE
    -- until it commits; rotate at the next maintenance run instead of
    -- stalling the ticker behind it.
    begin
        select queue_id, queue_cur_table, queue_ntables, queue_rotation_period,
               queue_switch_time, queue_switch_step2
          into v_q
          from pgq.queue where queue_name = i_queue_name
           for no key update nowait;
    exception when lock_not_available then
        return 0;
    end;

    if v_q.queue_rotation_period is null
       or v_q.queue_switch_step2 is null
       or v_q.queue_switch_time + v_q.queue_rotation_period > now()
    then
        return 0;
    end if;

    perform 1
       from pgq.subscription s
       left join pgq.tick t on t.tick_queue = s.sub_queue and t.tick_id = s.sub_last_tick
      where s.sub_queue = v_q.queue_id
        and (t.tick_id is null
             or pg_snapshot_xmin(t.tick_snapshot) <= v_q.queue_switch_step2)
      limit 1;
    if found then
        return 0;
    end if;

    v_slot := (v_q.queue_cur_table + 1) % v_q.queue_ntables;
    v_table := format('pgq.%I', 'event_' || v_q.queue_id || '_' || v_slot);
    begin
        execute 'lock table ' || v_table || ' in access exclusive mode nowait';
    exception when lock_not_available then
        raise warning 'maint_rotate_tables: cannot lock %, skipping rotation', v_table;
        return 0;
    end;
    execute 'truncate ' || v_table;

    update pgq.queue
       set queue_cur_table = v_slot,
           queue_switch_time = now(),
           queue_switch_step1 = pg_current_xact_id(),
           queue_switch_step2 = null
     where queue_id = v_q.queue_id;

    -- Ticks from before the confirmed switch are no longer needed, except
    -- the ones consumers sit on and the newest one (new consumers start there).
    select least(min(s.sub_last_tick),
                 (select max(tick_id) from pgq.tick where tick_queue = v_q.queue_id))
      into v_keep
      from pgq.subscription s where s.sub_queue = v_q.queue_id;
    if v_keep is null then
        select max(tick_id) into v_keep from pgq.tick where tick_queue = v_q.queue_id;
    end if;
    delete from pgq.tick
     where tick_queue = v_q.queue_id
       and tick_id < v_keep
       and pg_snapshot_xmin(tick_snapshot) < v_q.queue_switch_step2;

    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.maint_rotate_tables_step2()
--
--      Confirms rotations: records, for every queue that rotated, a txid
--      taken after the rotation committed.  Must run in a transaction of
--      its own, after step 1 committed.
--
-- Returns:
--      Number of queues confirmed.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      update - pgq.queue
-- ----------------------------------------------------------------------
create or replace function pgq.maint_rotate_tables_step2()
returns integer as $$
declare
    v_rows  int4;
begin
    update pgq.queue
       set queue_switch_step2 = pg_current_xact_id()
     where queue_switch_step2 is null;
    get diagnostics v_rows = row_count;
    return v_rows;
end;
$$ language plpgsql;
