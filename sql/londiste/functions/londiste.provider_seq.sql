-- ----------------------------------------------------------------------
-- Provider sequence registrations: subscribers that opt in get these
-- sequences' values pushed with every batch (docs/londiste.md).
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.provider_add_seq(i_queue_name, i_seq_name)
--
-- Returns:
--      1
--
-- Errors:
--      'no such event queue', 'seq not found' (the name in the DETAIL), and a unique
--      violation when it is registered already.
--
-- Calls:
--      londiste.resolve_name(i_seq_name, 'S'), londiste.quote_table(seq)
--
-- Tables directly manipulated:
--      insert - londiste.provider_seq
-- ----------------------------------------------------------------------
create or replace function londiste.provider_add_seq(i_queue_name text, i_seq_name text)
returns integer as $$
declare
    v_oid  oid;
begin
    perform 1 from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'no such event queue' using detail = format('queue %s', i_queue_name);
    end if;
    v_oid := londiste.resolve_name(i_seq_name, 'S');
    if v_oid is null then
        raise exception 'seq not found' using detail = format('sequence %s', i_seq_name);
    end if;
    insert into londiste.provider_seq (queue_name, seq_name)
    values (i_queue_name, londiste.quote_table(v_oid::regclass));
    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.provider_remove_seq(i_queue_name, i_seq_name)
--
-- Returns:
--      1
--
-- Errors:
--      'seq not attached' (the sequence in the DETAIL)
--
-- Calls:
--      londiste.resolve_name(i_seq_name, 'S'), londiste.quote_table(seq)
--
-- Tables directly manipulated:
--      delete - londiste.provider_seq
-- ----------------------------------------------------------------------
create or replace function londiste.provider_remove_seq(i_queue_name text, i_seq_name text)
returns integer as $$
declare
    v_oid  oid;
begin
    v_oid := londiste.resolve_name(i_seq_name, 'S');
    delete from londiste.provider_seq
     where queue_name = i_queue_name
       and seq_name = coalesce(londiste.quote_table(v_oid::regclass), i_seq_name);
    if not found then
        raise exception 'seq not attached' using detail = format('sequence %s', i_seq_name);
    end if;
    return 1;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.provider_get_seq_list(i_queue_name)
--
-- Returns:
--      The queue's sequences, in the order they were added.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.provider_get_seq_list(i_queue_name text)
returns setof text as $$
    select seq_name from londiste.provider_seq
     where queue_name = i_queue_name
     order by nr;
$$ language sql stable;
