-- ----------------------------------------------------------------------
-- Function: pgq.finish_batch(x_batch_id)
--
--      Closes a batch: the consumer's position moves to the batch's end
--      tick.  Events tagged for retry or failure stay where they were put.
--
-- Parameters:
--      x_batch_id - the batch
--
-- Returns:
--      1 when closed; 0 with WARNING 'finish_batch: batch <id> not found'
--      when no consumer has that batch open (e.g. finished already).
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      update - pgq.subscription
-- ----------------------------------------------------------------------
create or replace function pgq.finish_batch(x_batch_id bigint)
returns integer as $$
begin
    update pgq.subscription
       set sub_active = now(),
           sub_last_tick = sub_next_tick,
           sub_next_tick = null,
           sub_batch = null
     where sub_batch = x_batch_id;
    if not found then
        raise warning 'finish_batch: batch % not found', x_batch_id;
        return 0;
    end if;
    return 1;
end;
$$ language plpgsql;
