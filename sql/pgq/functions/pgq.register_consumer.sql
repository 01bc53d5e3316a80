-- ----------------------------------------------------------------------
-- Function: pgq.register_consumer(x_queue_name, x_consumer_id)
--
--      Subscribes a consumer to a queue.  A new consumer starts at the
--      queue's newest tick: it receives every event whose transaction was
--      not yet visible in that tick, including transactions that began
--      earlier and commit later.
--
-- Parameters:
--      x_queue_name  - queue name
--      x_consumer_id - consumer name
--
-- Returns:
--      1 when newly registered, 0 when it already was.
--
-- Errors:
--      'Event queue not created yet',
--      'No ticks for this queue.  Please run ticker on database.'
--
-- Calls:
--      pgq.register_consumer(x_queue_name, x_consumer_id, NULL)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.register_consumer(x_queue_name text, x_consumer_id text)
returns integer as $$
begin
    return pgq.register_consumer(x_queue_name, x_consumer_id, null);
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: pgq.register_consumer(x_queue_name, x_consumer_id, x_tick_pos)
--
--      Subscribes a consumer at a given tick, or moves an existing
--      consumer's position there.  With x_tick_pos NULL it behaves as the
--      two-argument form.
--
-- Parameters:
--      x_queue_name  - queue name
--      x_consumer_id - consumer name
--      x_tick_pos    - tick to start after, NULL for the newest tick
--
-- Returns:
--      1 when newly registered, 0 when it already existed (repositioned
--      if x_tick_pos was given).
--
-- Errors:
--      'Event queue not created yet',
--      'No ticks for this queue.  Please run ticker on database.',
--      'cannot reposition, tick not found: <tick>',
--      'reposition while active not allowed'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      insert - pgq.consumer, pgq.subscription
--      update - pgq.subscription
-- ----------------------------------------------------------------------
create or replace function pgq.register_consumer(
    x_queue_name text, x_consumer_id text, x_tick_pos bigint)
returns integer as $$
declare
    v_qid    int4;
    v_cid    int4;
    v_sub    record;
    v_tick   int8;
begin
    -- FOR SHARE keeps rotation (which locks the queue row for update) from
    -- deleting the tick a new consumer is about to sit on.
    select queue_id into v_qid
      from pgq.queue where queue_name = x_queue_name
       for share;
    if not found then
        raise exception 'Event queue not created yet';
    end if;

    if x_tick_pos is null then
        select tick_id into v_tick
          from pgq.tick where tick_queue = v_qid
         order by tick_queue desc, tick_id desc limit 1;
        if not found then
            raise exception 'No ticks for this queue.  Please run ticker on database.';
        end if;
    else
        perform 1 from pgq.tick where tick_queue = v_qid and tick_id = x_tick_pos;
        if not found then
            raise exception 'cannot reposition, tick not found: %', x_tick_pos;
        end if;
        v_tick := x_tick_pos;
    end if;

    insert into pgq.consumer (co_name) values (x_consumer_id)
        on conflict (co_name) do nothing;
    select co_id into v_cid from pgq.consumer where co_name = x_consumer_id;

    select sub_id, sub_batch into v_sub
      from pgq.subscription
     where sub_queue = v_qid and sub_consumer = v_cid
       for update;
    if found then
        if x_tick_pos is not null then
            if v_sub.sub_batch is not null then
                raise exception 'reposition while active not allowed';
            end if;
            update pgq.subscription
               set sub_last_tick = v_tick, sub_active = now()
             where sub_id = v_sub.sub_id;
        end if;
        return 0;
    end if;

    insert into pgq.subscription (sub_queue, sub_consumer, sub_last_tick)
    values (v_qid, v_cid, v_tick);
    return 1;
end;
$$ language plpgsql;
