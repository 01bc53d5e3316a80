-- ----------------------------------------------------------------------
-- Function: pgq.next_batch_custom(i_queue_name, i_consumer_name,
--                                 i_min_lag, i_min_count, i_min_interval)
--
--      Opens the consumer's next batch, or returns the batch that is
--      already open (an open batch is sticky: after a crash the same id,
--      ticks and events come back).  The caller must commit.
--
--      Without limits the batch ends at the first tick after the
--      consumer's position.  The limits make batches bigger:
--        i_min_lag      - only ticks at least this old
--        i_min_count    - end at the first tick with at least this many
--                         new events (by the event sequence)
--        i_min_interval - or at the first tick at least this far from the
--                         position, whichever comes first
--
-- Returns:
--      batch_id (NULL when there is nothing to read), cur_tick_id,
--      prev_tick_id, cur_tick_time, prev_tick_time, cur_tick_event_seq,
--      prev_tick_event_seq.
--
-- Errors:
--      'Not subscriber to queue: <queue>/<consumer>'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      update - pgq.subscription
-- ----------------------------------------------------------------------
create or replace function pgq.next_batch_custom(
    in i_queue_name text, in i_consumer_name text,
    in i_min_lag interval, in i_min_count int4, in i_min_interval interval,
    out batch_id int8,
    out cur_tick_id int8, out prev_tick_id int8,
    out cur_tick_time timestamptz, out prev_tick_time timestamptz,
    out cur_tick_event_seq int8, out prev_tick_event_seq int8)
as $$
declare
    v_sub   record;
    v_prev  record;
    v_next  record;
begin
    select s.sub_id, s.sub_queue, s.sub_last_tick, s.sub_batch, s.sub_next_tick
      into v_sub
      from pgq.queue q
      join pgq.subscription s on s.sub_queue = q.queue_id
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = i_queue_name
       and c.co_name = i_consumer_name
       for update of s;
    if not found then
        raise exception 'Not subscriber to queue: %/%', i_queue_name, i_consumer_name;
    end if;

    select t.tick_id, t.tick_time, t.tick_event_seq into v_prev
      from pgq.tick t
     where t.tick_queue = v_sub.sub_queue and t.tick_id = v_sub.sub_last_tick;

    if v_sub.sub_batch is not null then
        select t.tick_id, t.tick_time, t.tick_event_seq into v_next
          from pgq.tick t
         where t.tick_queue = v_sub.sub_queue and t.tick_id = v_sub.sub_next_tick;
        batch_id := v_sub.sub_batch;
    else
        if i_min_count is null and i_min_interval is null then
            select t.tick_id, t.tick_time, t.tick_event_seq into v_next
              from pgq.tick t
             where t.tick_queue = v_sub.sub_queue
               and t.tick_id > v_sub.sub_last_tick
               and (i_min_lag is null or t.tick_time <= now() - i_min_lag)
             order by t.tick_queue, t.tick_id
             limit 1;
        else
            select t.tick_id, t.tick_time, t.tick_event_seq into v_next
              from pgq.tick t
             where t.tick_queue = v_sub.sub_queue
               and t.tick_id > v_sub.sub_last_tick
               and (i_min_lag is null or t.tick_time <= now() - i_min_lag)
               and ((i_min_count is not null
                     and t.tick_event_seq - v_prev.tick_event_seq >= i_min_count)
                 or (i_min_interval is not null
                     and t.tick_time - v_prev.tick_time >= i_min_interval))
             order by t.tick_queue, t.tick_id
             limit 1;
        end if;
        if not found then
            prev_tick_id := v_prev.tick_id;
            prev_tick_time := v_prev.tick_time;
            prev_tick_event_seq := v_prev.tick_event_seq;
            return;
        end if;

        batch_id := nextval('pgq.batch_id_seq');
        update pgq.subscription
           set sub_batch = batch_id,
               sub_next_tick = v_next.tick_id,
               sub_active = now()
         where sub_id = v_sub.sub_id;
    end if;

    cur_tick_id := v_next.tick_id;
    cur_tick_time := v_next.tick_time;
    cur_tick_event_seq := v_next.tick_event_seq;
    prev_tick_id := v_prev.tick_id;
    prev_tick_time := v_prev.tick_time;
    prev_tick_event_seq := v_prev.tick_event_seq;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.next_batch_info(i_queue_name, i_consumer_name)
--
--      pgq.next_batch with the batch's tick ids, times and event sequence
--      positions.  Same errors as pgq.next_batch_custom.
--
-- Calls:
--      pgq.next_batch_custom(i_queue_name, i_consumer_name, NULL, NULL, NULL)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.next_batch_info(
    in i_queue_name text, in i_consumer_name text,
    out batch_id int8,
    out cur_tick_id int8, out prev_tick_id int8,
    out cur_tick_time timestamptz, out prev_tick_time timestamptz,
    out cur_tick_event_seq int8, out prev_tick_event_seq int8)
as $$
    select * from pgq.next_batch_custom(i_queue_name, i_consumer_name, null, null, null);
$$ language sql;

-- ----------------------------------------------------------------------
-- Function: pgq.next_batch(x_queue_name, x_consumer_name)
--
--      Opens the consumer's next batch (or returns the open one).
--
-- Returns:
--      The batch id, NULL when no tick follows the consumer's position.
--      The caller must commit.
--
-- Errors:
--      'Not subscriber to queue: <queue>/<consumer>'
--
-- Calls:
--      pgq.next_batch_custom(x_queue_name, x_consumer_name, NULL, NULL, NULL)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.next_batch(x_queue_name text, x_consumer_name text)
returns int8 as $$
    select batch_id from pgq.next_batch_custom(x_queue_name, x_consumer_name, null, null, null);
$$ language sql;
