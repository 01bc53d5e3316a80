-- ----------------------------------------------------------------------
-- Function: pgq.insert_event(queue_name, ev_type, ev_data
--                            [, ev_extra1, ev_extra2, ev_extra3, ev_extra4])
--
--      Inserts an event into a queue, in the caller's transaction: the
--      event is delivered only if that transaction commits.
--
-- Parameters:
--      queue_name      - queue name
--      ev_type         - user-defined type of the event
--      ev_data         - user data
--      ev_extra1..4    - extra user data
--
-- Returns:
--      The new event id.
--
-- Errors:
--      'No such queue'
--
-- Calls:
--      pgq.insert_event_raw(queue_name, NULL, now(), NULL, NULL, ev_type,
--                           ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.insert_event(queue_name text, ev_type text, ev_data text)
returns bigint as $$
    select pgq.insert_event_raw($1, null, now(), null, null, $2, $3, null, null, null, null);
$$ language sql;

create or replace function pgq.insert_event(
    queue_name text, ev_type text, ev_data text,
    ev_extra1 text, ev_extra2 text, ev_extra3 text, ev_extra4 text)
returns bigint as $$
    select pgq.insert_event_raw($1, null, now(), null, null, $2, $3, $4, $5, $6, $7);
$$ language sql;
