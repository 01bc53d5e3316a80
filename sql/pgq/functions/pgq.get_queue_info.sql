-- ----------------------------------------------------------------------
-- Function: pgq.get_queue_info([i_queue_name])
--
--      Queue settings and ticker state.
--
-- Parameters:
--      i_queue_name - one queue; without it, all queues
--
-- Returns:
--      queue_name, queue_ntables, queue_cur_table, queue_rotation_period,
--      queue_switch_time, queue_external_ticker, queue_ticker_max_count,
--      queue_ticker_max_lag, queue_ticker_idle_period,
--      ticker_lag (now - time of the last tick), then, added after
--      Skytools 2: ev_per_sec (event rate over the last ticks, about a
--      minute), ev_new (events since the last tick), last_tick_id,
--      queue_ticker_paused.
--      For an unknown queue name: one row of NULLs, as PgQ 2 did.
--
-- Calls:
--      pgq.seq_getval(queue_event_seq); the form without arguments calls
--      pgq.get_queue_info(NULL)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.get_queue_info(
    in i_queue_name text,
    out queue_name text, out queue_ntables integer, out queue_cur_table integer,
    out queue_rotation_period interval, out queue_switch_time timestamptz,
    out queue_external_ticker boolean, out queue_ticker_max_count integer,
    out queue_ticker_max_lag interval, out queue_ticker_idle_period interval,
    out ticker_lag interval, out ev_per_sec float8, out ev_new bigint,
    out last_tick_id bigint, out queue_ticker_paused boolean)
returns setof record as $$
    select q.queue_name, q.queue_ntables, q.queue_cur_table,
           q.queue_rotation_period, q.queue_switch_time,
           q.queue_external_ticker, q.queue_ticker_max_count,
           q.queue_ticker_max_lag, q.queue_ticker_idle_period,
           now() - lt.tick_time,
           case when lt.tick_time > rt.tick_time
                then (lt.tick_event_seq - rt.tick_event_seq)
                     / extract(epoch from lt.tick_time - rt.tick_time)::float8
           end,
           pgq.seq_getval(q.queue_event_seq) - lt.tick_event_seq,
           lt.tick_id, q.queue_ticker_paused
      from (select 1) one
      left join pgq.queue q on (i_queue_name is null or q.queue_name = i_queue_name)
      left join lateral (
            select t.tick_id, t.tick_time, t.tick_event_seq
              from pgq.tick t where t.tick_queue = q.queue_id
             order by t.tick_queue desc, t.tick_id desc limit 1) lt on true
      left join lateral (
            -- the newest tick at least a minute older than the last one,
            -- else the oldest tick there is
            select t.tick_time, t.tick_event_seq
              from pgq.tick t
             where t.tick_queue = q.queue_id
             order by (t.tick_time <= lt.tick_time - interval '1 minute') desc,
                      case when t.tick_time <= lt.tick_time - interval '1 minute'
                           then t.tick_id else -t.tick_id end desc
             limit 1) rt on true
     order by q.queue_name;
$$ language sql stable;

create or replace function pgq.get_queue_info(
    out queue_name text, out queue_ntables integer, out queue_cur_table integer,
    out queue_rotation_period interval, out queue_switch_time timestamptz,
    out queue_external_ticker boolean, out queue_ticker_max_count integer,
    out queue_ticker_max_lag interval, out queue_ticker_idle_period interval,
    out ticker_lag interval, out ev_per_sec float8, out ev_new bigint,
    out last_tick_id bigint, out queue_ticker_paused boolean)
returns setof record as $$
    select * from pgq.get_queue_info(null::text) where queue_name is not null;
$$ language sql stable;
