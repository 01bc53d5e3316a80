-- ----------------------------------------------------------------------
-- The subscriber's position per consumer: the end tick of the last batch
-- applied.  Replay writes it in the transaction that applies the batch,
-- so a batch whose end tick is recorded is known to be applied.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.get_last_tick(i_consumer)
--
-- Returns:
--      The tick id, NULL when none is recorded.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.get_last_tick(i_consumer text)
returns bigint as $$
    select last_tick_id from londiste.completed where consumer_id = i_consumer;
$$ language sql stable;

-- ----------------------------------------------------------------------
-- Function: londiste.set_last_tick(i_consumer, i_tick_id)
--
--      Records the position; NULL deletes it (the consumer starts afresh).
--
-- Returns:
--      1
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      insert, update, delete - londiste.completed
-- ----------------------------------------------------------------------
create or replace function londiste.set_last_tick(i_consumer text, i_tick_id bigint)
returns integer as $$
begin
    if i_tick_id is null then
        delete from londiste.completed where consumer_id = i_consumer;
    else
        insert into londiste.completed (consumer_id, last_tick_id)
        values (i_consumer, i_tick_id)
        on conflict (consumer_id) do update set last_tick_id = excluded.last_tick_id;
    end if;
    return 1;
end;
$$ language plpgsql;
