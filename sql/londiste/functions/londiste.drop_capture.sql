-- ----------------------------------------------------------------------
-- Function: londiste.drop_capture(i_queue_name, i_table)
--
--      Removes what londiste.create_capture made for this table and
--      queue: its triggers (either mode) and the generated function.
--
-- Returns:
--      1
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      drop trigger - the capture triggers on i_table
--      drop function - londiste.capture_<table oid>_<queue id>
-- ----------------------------------------------------------------------
create or replace function londiste.drop_capture(i_queue_name text, i_table regclass)
returns integer as $$
declare
    v_qid      int4;
    v_trigger  text;
begin
    select queue_id into v_qid from pgq.queue where queue_name = i_queue_name;
    if not found then
        return 0;
    end if;
    v_trigger := left('londiste_capture_' || v_qid, 63);
    execute format('drop trigger if exists %I on %s', v_trigger, i_table);
    execute format('drop trigger if exists %I on %s', left(v_trigger, 56) || '_update', i_table);
    execute format('drop trigger if exists %I on %s', left(v_trigger, 56) || '_delete', i_table);
    execute format('drop trigger if exists %I on %s', v_trigger || '_truncate', i_table);
    execute format('drop function if exists londiste.%I()', 'capture_' || i_table::oid || '_' || v_qid);
    return 1;
end;
$$ language plpgsql;
