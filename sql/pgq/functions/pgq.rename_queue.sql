-- ----------------------------------------------------------------------
-- Function: pgq.rename_queue(i_old_name, i_new_name)
--
--      Renames a queue.  Its tables and sequences are named by queue id,
--      so nothing else changes; producers and consumers must use the new
--      name from the moment the transaction commits.
--
-- Returns:
--      1
--
-- Errors:
--      'Invalid NULL value', 'No such event queue',
--      'queue already exists: <name>'
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      update - pgq.queue
-- ----------------------------------------------------------------------
create or replace function pgq.rename_queue(i_old_name text, i_new_name text)
returns integer as $$
begin
    if i_old_name is null or i_new_name is null or i_new_name = '' then
        raise exception 'Invalid NULL value';
    end if;
    perform 1 from pgq.queue where queue_name = i_new_name;
    if found then
        raise exception 'queue already exists: %', i_new_name;
    end if;
    update pgq.queue set queue_name = i_new_name where queue_name = i_old_name;
    if not found then
        raise exception 'No such event queue';
    end if;
    return 1;
end;
$$ language plpgsql;
