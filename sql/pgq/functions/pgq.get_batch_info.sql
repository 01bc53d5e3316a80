-- ----------------------------------------------------------------------
-- Function: pgq.get_batch_info(x_batch_id)
--
--      Describes an open batch.
--
-- Parameters:
--      x_batch_id - the batch
--
-- Returns:
--      queue_name, consumer_name, batch_start (time of the start tick),
--      batch_end (time of the end tick), prev_tick_id, tick_id,
--      lag (now - batch_end).  No row when the batch is not open.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.get_batch_info(
    in x_batch_id bigint,
    out queue_name text, out consumer_name text,
    out batch_start timestamptz, out batch_end timestamptz,
    out prev_tick_id bigint, out tick_id bigint, out lag interval)
returns setof record as $$
    select q.queue_name, c.co_name, pt.tick_time, ct.tick_time,
           pt.tick_id, ct.tick_id, now() - ct.tick_time
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
      join pgq.tick pt on pt.tick_queue = s.sub_queue and pt.tick_id = s.sub_last_tick
      join pgq.tick ct on ct.tick_queue = s.sub_queue and ct.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
$$ language sql stable;
