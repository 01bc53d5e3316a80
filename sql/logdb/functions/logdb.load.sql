-- ----------------------------------------------------------------------
-- Function: logdb.load(i_max_batches)
--
--      Moves the log records waiting in the queue `logdb` into
--      logdb.record: confirms the previous call's table rotation, ticks
--      the queue, then takes up to i_max_batches batches as consumer
--      logdb_loader, and starts the next rotation when one is due.  So the
--      log database needs no ticker of its own: whoever calls load (the
--      services after shipping records, `pgqadm CONF logs` before reading)
--      keeps it current and its event tables rotating.  One caller at a
--      time: a second concurrent call returns 0 at once instead of waiting.
--
-- Parameters:
--      i_max_batches - most batches to load in this call
--
-- Returns:
--      Records loaded.
--
-- Calls:
--      pgq.maint_rotate_tables_step2(), pgq.ticker(queue),
--      pgq.next_batch(queue, consumer), pgq.get_batch_events(batch),
--      pgq.finish_batch(batch), pgq.maint_rotate_tables_step1(queue)
--
-- Tables directly manipulated:
--      insert - logdb.record
-- ----------------------------------------------------------------------
create or replace function logdb.load(i_max_batches int4 default 100)
returns int8 as $$
declare
    v_batch   int8;
    v_rows    int8;
    v_total   int8 := 0;
    v_n       int4 := 0;
begin
    -- lock logdbLoad of shared/db/advisory-locks.ts
    if not pg_try_advisory_xact_lock(1886482808, 0) then
        return 0;
    end if;
    -- Step 2 of a rotation step 1 began in an earlier call (another transaction).
    perform pgq.maint_rotate_tables_step2();
    perform pgq.ticker('logdb');
    loop
        exit when v_n >= i_max_batches;
        v_batch := pgq.next_batch('logdb', 'logdb_loader');
        exit when v_batch is null;
        -- A line that is not JSON is kept as the message of a record of its own.
        insert into logdb.record (time, level, service, job, host, pid, msg, record, ev_id)
        select coalesce(to_timestamp((r.j->>'time')::float8 / 1000), e.ev_time),
               coalesce((r.j->>'level')::int4, 30),
               coalesce(r.j->>'service', e.ev_extra1),
               coalesce(r.j->>'job', e.ev_extra2),
               coalesce(r.j->>'host', e.ev_extra3),
               (r.j->>'pid')::int4,
               r.j->>'msg',
               r.j,
               e.ev_id
          from pgq.get_batch_events(v_batch) e,
               lateral (select case when e.ev_data ~ '^\s*\{' and e.ev_data::jsonb is not null
                                    then e.ev_data::jsonb
                                    else jsonb_build_object('msg', e.ev_data) end as j) r
        on conflict (ev_id) do nothing;
        get diagnostics v_rows = row_count;
        v_total := v_total + v_rows;
        perform pgq.finish_batch(v_batch);
        v_n := v_n + 1;
    end loop;
    perform pgq.maint_rotate_tables_step1('logdb');
    return v_total;
end;
$$ language plpgsql;
