-- ----------------------------------------------------------------------
-- Function: pgq.batch_event_tables(x_batch_id)
--
--      The slot tables that can hold events of a batch, given the queue's
--      last rotation (step1 = rotating txid, step2 = a txid taken after
--      the rotation committed):
--        * the batch ended before the rotation (xmax(cur tick) <= step1):
--          the previous slot only;
--        * it began after the rotation was confirmed
--          (xmin(prev tick) > step2): the current slot only;
--        * otherwise both.
--      This holds with lazily assigned txids because
--      pgq.insert_event_raw takes its txid before reading the current
--      slot; the rotation guard makes sure no batch needs an older slot.
--
-- Parameters:
--      x_batch_id - an open batch
--
-- Returns:
--      Qualified table names, previous slot first.
--
-- Errors:
--      'batch not found'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.batch_event_tables(x_batch_id bigint)
returns setof text as $$
declare
    v_b     record;
    v_prev  int4;
begin
    select q.queue_data_pfx, q.queue_cur_table, q.queue_ntables,
           q.queue_switch_step1, q.queue_switch_step2,
           pg_snapshot_xmin(pt.tick_snapshot) as prev_xmin,
           pg_snapshot_xmax(ct.tick_snapshot) as cur_xmax
      into v_b
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.tick pt on pt.tick_queue = s.sub_queue and pt.tick_id = s.sub_last_tick
      join pgq.tick ct on ct.tick_queue = s.sub_queue and ct.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'batch not found';
    end if;

    v_prev := (v_b.queue_cur_table + v_b.queue_ntables - 1) % v_b.queue_ntables;

    if v_b.cur_xmax <= v_b.queue_switch_step1 then
        return next v_b.queue_data_pfx || '_' || v_prev;
    elsif v_b.queue_switch_step2 is not null and v_b.prev_xmin > v_b.queue_switch_step2 then
        return next v_b.queue_data_pfx || '_' || v_b.queue_cur_table;
    else
        return next v_b.queue_data_pfx || '_' || v_prev;
        return next v_b.queue_data_pfx || '_' || v_b.queue_cur_table;
    end if;
end;
$$ language plpgsql stable;
