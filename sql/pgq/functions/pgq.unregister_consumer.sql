-- ----------------------------------------------------------------------
-- Function: pgq.unregister_consumer(x_queue_name, x_consumer_name)
--
--      Removes a consumer's subscription together with its retry and
--      failed events, even when it has a batch open.
--
-- Parameters:
--      x_queue_name    - queue name
--      x_consumer_name - consumer name
--
-- Returns:
--      1
--
-- Errors:
--      'consumer not registered on queue'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      delete - pgq.retry_queue, pgq.failed_queue, pgq.subscription
-- ----------------------------------------------------------------------
create or replace function pgq.unregister_consumer(x_queue_name text, x_consumer_name text)
returns integer as $$
declare
    v_sub_id  int4;
begin
    select s.sub_id into v_sub_id
      from pgq.subscription s
      join pgq.queue q on q.queue_id = s.sub_queue
      join pgq.consumer c on c.co_id = s.sub_consumer
     where q.queue_name = x_queue_name
       and c.co_name = x_consumer_name
       for update of s;
    if not found then
        raise exception 'consumer not registered on queue';
    end if;

    delete from pgq.retry_queue where ev_owner = v_sub_id;
    delete from pgq.failed_queue where ev_owner = v_sub_id;
    delete from pgq.subscription where sub_id = v_sub_id;
    return 1;
end;
$$ language plpgsql;
