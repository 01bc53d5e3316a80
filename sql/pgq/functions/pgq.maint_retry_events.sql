-- ----------------------------------------------------------------------
-- Function: pgq.maint_retry_events()
--
--      Moves due events from the retry queue back into their queue, for
--      their owner only (same id, time and retry count, new txid).  Each
--      due row is moved exactly once: rows are locked (SKIP LOCKED) so
--      concurrent movers share the work instead of duplicating it.
--      Call repeatedly until it returns 0.
--
-- Returns:
--      Number of events moved (at most 100 per call).
--
-- Calls:
--      pgq.insert_event_raw(...)
--
-- Tables directly manipulated:
--      delete - pgq.retry_queue
-- ----------------------------------------------------------------------
create or replace function pgq.maint_retry_events()
returns integer as $$
declare
    v_ev     record;
    v_count  int4 := 0;
begin
    for v_ev in
        select q.queue_name, r.ev_id, r.ev_time, r.ev_owner, r.ev_retry,
               r.ev_type, r.ev_data, r.ev_extra1, r.ev_extra2, r.ev_extra3, r.ev_extra4
          from pgq.retry_queue r
          join pgq.subscription s on s.sub_id = r.ev_owner
          join pgq.queue q on q.queue_id = s.sub_queue
         where r.ev_retry_after <= now()
         order by r.ev_retry_after
         limit 100
           for update of r skip locked
    loop
        perform pgq.insert_event_raw(v_ev.queue_name, v_ev.ev_id, v_ev.ev_time,
                                     v_ev.ev_owner, v_ev.ev_retry, v_ev.ev_type,
                                     v_ev.ev_data, v_ev.ev_extra1, v_ev.ev_extra2,
                                     v_ev.ev_extra3, v_ev.ev_extra4);
        delete from pgq.retry_queue
         where ev_owner = v_ev.ev_owner and ev_id = v_ev.ev_id;
        v_count := v_count + 1;
    end loop;
    return v_count;
end;
$$ language plpgsql;
