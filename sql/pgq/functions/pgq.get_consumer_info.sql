-- ----------------------------------------------------------------------
-- Function: pgq.get_consumer_info([i_queue_name [, i_consumer_name]])
--
--      Consumer positions and lag.
--
-- Parameters:
--      i_queue_name    - one queue; without it, all queues
--      i_consumer_name - one consumer of that queue
--
-- Returns:
--      queue_name, consumer_name, lag (now - time of the consumer's last
--      tick), last_seen (now - last batch activity), last_tick,
--      current_batch, next_tick, then, added after Skytools 2:
--      pending_events (events between the consumer's last tick and the
--      queue's newest tick, by the event sequence).
--      No rows for unknown names.
--
-- Calls:
--      None; the shorter forms call
--      pgq.get_consumer_info(i_queue_name, i_consumer_name)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.get_consumer_info(
    in i_queue_name text, in i_consumer_name text,
    out queue_name text, out consumer_name text,
    out lag interval, out last_seen interval,
    out last_tick bigint, out current_batch bigint, out next_tick bigint,
    out pending_events bigint)
returns setof record as $$
    select q.queue_name, c.co_name,
           now() - t.tick_time, now() - s.sub_active,
           s.sub_last_tick, s.sub_batch, s.sub_next_tick,
           lt.tick_event_seq - t.tick_event_seq
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
      left join pgq.tick t on t.tick_queue = s.sub_queue and t.tick_id = s.sub_last_tick
      left join lateral (
            select x.tick_event_seq from pgq.tick x
             where x.tick_queue = s.sub_queue
             order by x.tick_queue desc, x.tick_id desc limit 1) lt on true
     where (i_queue_name is null or q.queue_name = i_queue_name)
       and (i_consumer_name is null or c.co_name = i_consumer_name)
     order by q.queue_name, c.co_name;
$$ language sql stable;

create or replace function pgq.get_consumer_info(
    in i_queue_name text,
    out queue_name text, out consumer_name text,
    out lag interval, out last_seen interval,
    out last_tick bigint, out current_batch bigint, out next_tick bigint,
    out pending_events bigint)
returns setof record as $$
    select * from pgq.get_consumer_info(i_queue_name, null);
$$ language sql stable;

create or replace function pgq.get_consumer_info(
    out queue_name text, out consumer_name text,
    out lag interval, out last_seen interval,
    out last_tick bigint, out current_batch bigint, out next_tick bigint,
    out pending_events bigint)
returns setof record as $$
    select * from pgq.get_consumer_info(null, null);
$$ language sql stable;
