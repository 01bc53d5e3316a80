-- ----------------------------------------------------------------------
-- Function: pgq.register_consumer_copy(i_queue_name, i_from_consumer,
--                                      i_to_consumer, i_move)
--
--      Registers a new consumer at another consumer's position
--      (pgqadm reg-copy); with i_move also unregisters the old one in the
--      same transaction (pgqadm reg-move).  The new consumer receives
--      exactly the events the old one had not finished.
--
-- Returns:
--      The tick the new consumer starts after.
--
-- Errors:
--      'no such queue/consumer', 'consumer already registered: <name>'
--
-- Calls:
--      pgq.failed_subscription(i_queue_name, i_from_consumer),
--      pgq.register_consumer(i_queue_name, i_to_consumer, tick),
--      pgq.unregister_consumer(i_queue_name, i_from_consumer)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.register_consumer_copy(
    i_queue_name text, i_from_consumer text, i_to_consumer text, i_move boolean)
returns bigint as $$
declare
    v_sub_id  int4;
    v_tick    int8;
begin
    v_sub_id := pgq.failed_subscription(i_queue_name, i_from_consumer);
    select sub_last_tick into v_tick from pgq.subscription where sub_id = v_sub_id for update;
    perform 1
       from pgq.subscription s
       join pgq.consumer c on c.co_id = s.sub_consumer
      where s.sub_queue = (select sub_queue from pgq.subscription where sub_id = v_sub_id)
        and c.co_name = i_to_consumer;
    if found then
        raise exception 'consumer already registered: %', i_to_consumer;
    end if;
    perform pgq.register_consumer(i_queue_name, i_to_consumer, v_tick);
    if i_move then
        perform pgq.unregister_consumer(i_queue_name, i_from_consumer);
    end if;
    return v_tick;
end;
$$ language plpgsql;
