-- ----------------------------------------------------------------------
-- Function: pgq.create_queue(i_queue_name)
--
--      Creates a queue: its event sequence and tick sequence, the queue's
--      event table pgq.event_<id> with one slot table per rotation
--      position (pgq.event_<id>_0 .. _<ntables-1>), grants, and tick 1 so
--      that consumers can register at once.
--
-- Parameters:
--      i_queue_name - name of the new queue
--
-- Returns:
--      1 when created, 0 when the queue already exists.
--
-- Errors:
--      'Invalid NULL value'
--
-- Calls:
--      pgq.grant_perms(i_queue_name)
--
-- Tables directly manipulated:
--      insert - pgq.queue, pgq.tick
--      create - pgq.event_<id> (a partition of pgq.event_template), its
--               slot tables pgq.event_<id>_<n>, the sequences
--               pgq.event_<id>_id_seq and pgq.event_<id>_tick_seq
--      alter owner - the same, to the owner of schema pgq when the caller
--               is only a member of that role
-- ----------------------------------------------------------------------
create or replace function pgq.create_queue(i_queue_name text)
returns integer as $$
declare
    v_qid      int4;
    v_ntables  int4;
    v_parent   text;
    v_n        int4;
    v_owner    name;
begin
    if i_queue_name is null then
        raise exception 'Invalid NULL value';
    end if;

    perform 1 from pgq.queue where queue_name = i_queue_name;
    if found then
        return 0;
    end if;

    v_qid := nextval('pgq.queue_queue_id_seq');
    v_parent := 'event_' || v_qid;

    insert into pgq.queue (queue_id, queue_name, queue_data_pfx,
                           queue_event_seq, queue_tick_seq)
    values (v_qid, i_queue_name, 'pgq.' || v_parent,
            'pgq.' || v_parent || '_id_seq', 'pgq.' || v_parent || '_tick_seq')
    returning queue_ntables into v_ntables;

    execute format('create sequence pgq.%I', v_parent || '_id_seq');
    execute format('create sequence pgq.%I', v_parent || '_tick_seq');
    execute format('create table pgq.%I partition of pgq.event_template'
                   ' for values in (%s) partition by list (ev_slot)', v_parent, v_qid);
    for v_n in 0 .. v_ntables - 1 loop
        execute format('create table pgq.%I partition of pgq.%I for values in (%s)',
                       v_parent || '_' || v_n, v_parent, v_n);
    end loop;

    perform pgq.grant_perms(i_queue_name);

    -- The queue's objects belong to the schema's owner whoever creates them
    -- (a member of that role, sql/londiste/roles.sql): any other member may
    -- then rotate or drop them.
    select r.rolname into v_owner
      from pg_catalog.pg_namespace n join pg_catalog.pg_roles r on r.oid = n.nspowner
     where n.nspname = 'pgq';
    if v_owner <> current_user and pg_catalog.pg_has_role(v_owner, 'MEMBER') then
        execute format('alter sequence pgq.%I owner to %I', v_parent || '_id_seq', v_owner);
        execute format('alter sequence pgq.%I owner to %I', v_parent || '_tick_seq', v_owner);
        execute format('alter table pgq.%I owner to %I', v_parent, v_owner);
        for v_n in 0 .. v_ntables - 1 loop
            execute format('alter table pgq.%I owner to %I', v_parent || '_' || v_n, v_owner);
        end loop;
    end if;

    insert into pgq.tick (tick_queue, tick_id, tick_event_seq)
    values (v_qid, nextval('pgq.' || v_parent || '_tick_seq'), 0);

    return 1;
end;
$$ language plpgsql;
