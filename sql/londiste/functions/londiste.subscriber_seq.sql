-- ----------------------------------------------------------------------
-- Subscriber sequence registrations: the provider sequences whose values
-- replay copies with every applied batch, never moving one back.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_add_seq(i_queue_name, i_seq_name)
--
--      Registers a sequence (its existence is checked by the caller).
--
-- Returns:
--      0.  A unique violation when registered already.
--
-- Calls:
--      londiste.canonical_name(i_seq_name)
--
-- Tables directly manipulated:
--      insert - londiste.subscriber_seq
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_add_seq(i_queue_name text, i_seq_name text)
returns integer as $$
begin
    insert into londiste.subscriber_seq (queue_name, seq_name)
    values (i_queue_name, londiste.canonical_name(i_seq_name));
    return 0;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_remove_seq(i_queue_name, i_seq_name)
--
-- Returns:
--      0
--
-- Errors:
--      'no such seq?'
--
-- Calls:
--      londiste.canonical_name(i_seq_name)
--
-- Tables directly manipulated:
--      delete - londiste.subscriber_seq
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_remove_seq(i_queue_name text, i_seq_name text)
returns integer as $$
begin
    delete from londiste.subscriber_seq
     where queue_name = i_queue_name and seq_name = londiste.canonical_name(i_seq_name);
    if not found then
        raise exception 'no such seq?';
    end if;
    return 0;
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_get_seq_list(i_queue_name)
--
-- Returns:
--      The registered sequences, in the order they were added.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_get_seq_list(i_queue_name text)
returns setof text as $$
    select seq_name from londiste.subscriber_seq
     where queue_name = i_queue_name
     order by nr;
$$ language sql stable;
