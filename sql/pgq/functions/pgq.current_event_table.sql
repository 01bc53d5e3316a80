-- ----------------------------------------------------------------------
-- Function: pgq.current_event_table(x_queue_name)
--
--      Name of the slot table that new events of the queue go into.
--      Valid only inside the calling transaction: rotation may switch it
--      as soon as the transaction ends.
--
-- Parameters:
--      x_queue_name - queue name
--
-- Returns:
--      'pgq.event_<queue_id>_<slot>'
--
-- Errors:
--      'Event queue not found'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.current_event_table(x_queue_name text)
returns text as $$
declare
    v_table  text;
begin
    select queue_data_pfx || '_' || queue_cur_table into v_table
      from pgq.queue where queue_name = x_queue_name;
    if not found then
        raise exception 'Event queue not found';
    end if;
    return v_table;
end;
$$ language plpgsql;
