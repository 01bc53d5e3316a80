-- ----------------------------------------------------------------------
-- Function: pgq.grant_perms(i_queue_name)
--
--      Lets every role produce into and read from a queue, as PgQ does:
--      SELECT on the queue's event tables, SELECT and UPDATE on its
--      sequences.  Inserting goes through pgq.event_template, on which
--      PUBLIC has INSERT.
--
-- Parameters:
--      i_queue_name - queue name
--
-- Returns:
--      1
--
-- Errors:
--      'No such event queue'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      grant - pgq.event_<id> and its slot tables, pgq.event_<id>_id_seq,
--              pgq.event_<id>_tick_seq
-- ----------------------------------------------------------------------
create or replace function pgq.grant_perms(i_queue_name text)
returns integer as $$
declare
    v_q   record;
    v_n   int4;
begin
    select queue_id, queue_ntables into v_q
      from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'No such event queue';
    end if;
    execute format('grant select on pgq.%I to public', 'event_' || v_q.queue_id);
    for v_n in 0 .. v_q.queue_ntables - 1 loop
        execute format('grant select on pgq.%I to public',
                       'event_' || v_q.queue_id || '_' || v_n);
    end loop;
    execute format('grant select, update, usage on pgq.%I, pgq.%I to public',
                   'event_' || v_q.queue_id || '_id_seq',
                   'event_' || v_q.queue_id || '_tick_seq');
    return 1;
end;
$$ language plpgsql;
