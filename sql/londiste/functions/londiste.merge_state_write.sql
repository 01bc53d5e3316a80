-- ----------------------------------------------------------------------
-- Plain-SQL writes of londiste.subscriber_table.merge_state, the habit of
-- Skytools scripts (update ... set merge_state = null where table_name =
-- ... to copy a table again), become the table-sync machine's move.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.merge_state_write()  [trigger]
--
--      Before an update of a subscriber table row.  A write that changes
--      merge_state without moving sync_version (so: not the machine's
--      writer, shared/londiste/sync-store.ts, nor the compatibility
--      functions) is looked up in londiste.sync_sql_write, which the
--      machine generates: a legal move (a resync for NULL; ok from (none)
--      for 'ok') is written as sync-store.ts writes it: the new persisted
--      state, sync_version + 1 (so a service holding the old version loses
--      its compare-and-set and reads again), the columns that go with the
--      state, and a londiste.sync_outbox entry, so replay and the copy
--      workers act on it.  Anything else is refused.
--
-- Errors:
--      'Bad table state: <text>' for a text that is no state;
--      'cannot set merge_state of <t> from <a> to <b> by hand: ...' naming
--      the londiste command that does what was likely meant.
--
-- Calls:
--      londiste.sync_state_of_text(text), londiste.sync_sql_write(from, text),
--      londiste.sync_state_text(sync_state)
--
-- Tables directly manipulated:
--      insert - londiste.sync_outbox
-- ----------------------------------------------------------------------
create or replace function londiste.merge_state_write()
returns trigger as $$
declare
    v_from   text;
    v_move   record;
    v_to     text;
begin
    if new.sync_version is distinct from old.sync_version
       or new.merge_state is not distinct from old.merge_state then
        return new;
    end if;
    if new.merge_state is not null and londiste.sync_state_of_text(new.merge_state) is null then
        raise exception 'Bad table state: %', new.merge_state
            using errcode = 'check_violation';
    end if;
    v_from := coalesce(old.sync_state->>'state', londiste.sync_state_of_text(old.merge_state));
    select * into v_move from londiste.sync_sql_write(v_from, new.merge_state);
    if not found then
        raise exception 'cannot set merge_state of % from % to % by hand: that is not a move of its sync state',
                old.table_name, coalesce(old.merge_state, 'NULL'), coalesce(new.merge_state, 'NULL')
            using errcode = 'check_violation',
                  hint = format('to copy it again: set merge_state = NULL, or run "londiste CONF subscriber resync %s"; '
                                'to stop replicating it: "londiste CONF subscriber remove %s"',
                                old.table_name, old.table_name);
    end if;

    v_to := londiste.sync_state_text(v_move.to_sync);
    new.sync_state := v_move.to_sync;
    new.merge_state := v_to;
    new.snapshot := v_move.to_sync->'context'->>'snapshot';
    new.sync_version := old.sync_version + 1;
    new.last_error := v_move.to_sync->'context'->>'error';
    new.error_time := case when new.last_error is null then null else now() end;
    if v_to = 'ok' then
        new.skip_truncate := null;
    end if;
    if v_to is null or v_to in ('ok', 'error') then
        new.lease_owner := null;
        new.lease_until := null;
    end if;

    insert into londiste.sync_outbox (queue_name, table_name, from_state, to_state, event, version, created_at)
    values (old.queue_name, old.table_name, old.merge_state, v_to,
            v_move.event || jsonb_build_object('actor', 'admin', 'via', 'merge_state'),
            new.sync_version, clock_timestamp());
    return new;
end;
$$ language plpgsql;

drop trigger if exists merge_state_write on londiste.subscriber_table;
create trigger merge_state_write
    before update on londiste.subscriber_table
    for each row execute function londiste.merge_state_write();
-- Also in sessions with session_replication_role = replica (replay's).
alter table londiste.subscriber_table enable always trigger merge_state_write;
