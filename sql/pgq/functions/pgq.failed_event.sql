-- ----------------------------------------------------------------------
-- Failed-queue functions: list, count, delete and retry the events a
-- consumer gave up on.  All raise 'no such queue/consumer' when the
-- subscription does not exist.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: pgq.failed_subscription(x_queue_name, x_consumer_name)  [internal]
--
-- Returns:
--      The subscription id.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.failed_subscription(x_queue_name text, x_consumer_name text)
returns int4 as $$
declare
    v_sub_id  int4;
begin
    select s.sub_id into v_sub_id
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = x_queue_name and c.co_name = x_consumer_name;
    if not found then
        raise exception 'no such queue/consumer';
    end if;
    return v_sub_id;
end;
$$ language plpgsql stable;

-- ----------------------------------------------------------------------
-- Function: pgq.failed_event_list(x_queue_name, x_consumer_name
--                                 [, x_count, x_offset])
--
-- Returns:
--      The consumer's failed events in ev_id order: ev_failed_reason,
--      ev_failed_time, ev_id, ev_time, ev_txid, ev_owner, ev_retry,
--      ev_type, ev_data, ev_extra1..4.
--
-- Calls:
--      pgq.failed_subscription(x_queue_name, x_consumer_name);
--      the two-argument form calls the four-argument one
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.failed_event_list(
    in x_queue_name text, in x_consumer_name text, in x_count integer, in x_offset integer,
    out ev_failed_reason text, out ev_failed_time timestamptz,
    out ev_id bigint, out ev_time timestamptz, out ev_txid bigint,
    out ev_owner integer, out ev_retry integer, out ev_type text, out ev_data text,
    out ev_extra1 text, out ev_extra2 text, out ev_extra3 text, out ev_extra4 text)
returns setof record as $$
    select f.ev_failed_reason, f.ev_failed_time, f.ev_id, f.ev_time,
           f.ev_txid::text::int8, f.ev_owner, f.ev_retry, f.ev_type, f.ev_data,
           f.ev_extra1, f.ev_extra2, f.ev_extra3, f.ev_extra4
      from pgq.failed_queue f
     where f.ev_owner = pgq.failed_subscription(x_queue_name, x_consumer_name)
     order by f.ev_id
     limit x_count offset x_offset;
$$ language sql stable;

create or replace function pgq.failed_event_list(
    in x_queue_name text, in x_consumer_name text,
    out ev_failed_reason text, out ev_failed_time timestamptz,
    out ev_id bigint, out ev_time timestamptz, out ev_txid bigint,
    out ev_owner integer, out ev_retry integer, out ev_type text, out ev_data text,
    out ev_extra1 text, out ev_extra2 text, out ev_extra3 text, out ev_extra4 text)
returns setof record as $$
    select * from pgq.failed_event_list(x_queue_name, x_consumer_name, null, 0);
$$ language sql stable;

-- ----------------------------------------------------------------------
-- Function: pgq.failed_event_count(x_queue_name, x_consumer_name)
--
-- Returns:
--      Number of the consumer's failed events.
--
-- Calls:
--      pgq.failed_subscription(x_queue_name, x_consumer_name)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.failed_event_count(x_queue_name text, x_consumer_name text)
returns integer as $$
    select count(*)::int4 from pgq.failed_queue
     where ev_owner = pgq.failed_subscription(x_queue_name, x_consumer_name);
$$ language sql stable;

-- ----------------------------------------------------------------------
-- Function: pgq.failed_event_delete(x_queue_name, x_consumer_name, x_event_id)
--
-- Returns:
--      1.  Errors: 'event not found'.
--
-- Calls:
--      pgq.failed_subscription(x_queue_name, x_consumer_name)
--
-- Tables directly manipulated:
--      delete - pgq.failed_queue
-- ----------------------------------------------------------------------
create or replace function pgq.failed_event_delete(
    x_queue_name text, x_consumer_name text, x_event_id bigint)
returns integer as $$
begin
    delete from pgq.failed_queue
     where ev_owner = pgq.failed_subscription(x_queue_name, x_consumer_name)
       and ev_id = x_event_id;
    if not found then
        raise exception 'event not found';
    end if;
    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.failed_event_retry(x_queue_name, x_consumer_name, x_event_id)
--
--      Puts a failed event back into the queue, for this consumer only,
--      with the same id and retry count, and removes it from the failed
--      queue.  It arrives with the next tick.
--
-- Returns:
--      The event id.  Errors: 'event not found'.
--
-- Calls:
--      pgq.failed_subscription(x_queue_name, x_consumer_name),
--      pgq.insert_event_raw(...)
--
-- Tables directly manipulated:
--      delete - pgq.failed_queue
-- ----------------------------------------------------------------------
create or replace function pgq.failed_event_retry(
    x_queue_name text, x_consumer_name text, x_event_id bigint)
returns bigint as $$
declare
    v_sub_id  int4;
    v_ev      record;
begin
    v_sub_id := pgq.failed_subscription(x_queue_name, x_consumer_name);
    delete from pgq.failed_queue
     where ev_owner = v_sub_id and ev_id = x_event_id
    returning * into v_ev;
    if not found then
        raise exception 'event not found';
    end if;
    perform pgq.insert_event_raw(x_queue_name, v_ev.ev_id, v_ev.ev_time, v_sub_id,
                                 v_ev.ev_retry, v_ev.ev_type, v_ev.ev_data,
                                 v_ev.ev_extra1, v_ev.ev_extra2, v_ev.ev_extra3,
                                 v_ev.ev_extra4);
    return v_ev.ev_id;
end;
$$ language plpgsql;
