-- ----------------------------------------------------------------------
-- The optional deny trigger: refuses writes to a replicated subscriber
-- table.  Replay (and copy) write with session_replication_role =
-- replica, where ordinary triggers do not fire, so only they get through.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.deny_trigger()
--
--      Trigger function: raises for any INSERT, UPDATE, DELETE or
--      TRUNCATE.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.deny_trigger()
returns trigger as $$
begin
    raise exception 'table %.% is replicated by londiste: writes are denied on the subscriber (londiste subscriber allow-writes lifts this)',
        quote_ident(tg_table_schema), quote_ident(tg_table_name)
        using errcode = 'insufficient_privilege';
end;
$$ language plpgsql;

-- ----------------------------------------------------------------------
-- Function: londiste.subscriber_deny_writes(i_table, i_deny)
--
--      Adds (true) or drops (false) the deny triggers
--      londiste_deny_writes and londiste_deny_truncate on a table.
--
-- Returns:
--      1 when something changed, 0 when it was so already.
--
-- Errors:
--      'no such table: <t>'
--
-- Calls:
--      londiste.resolve_name(i_table, 'r'); the triggers it creates call
--      londiste.deny_trigger()
--
-- Tables directly manipulated:
--      create/drop trigger - londiste_deny_writes, londiste_deny_truncate on
--                            i_table
-- ----------------------------------------------------------------------
create or replace function londiste.subscriber_deny_writes(i_table text, i_deny boolean)
returns integer as $$
declare
    v_oid  oid := londiste.resolve_name(i_table, 'r');
    v_has  boolean;
begin
    if v_oid is null then
        raise exception 'no such table: %', i_table;
    end if;
    select exists (select 1 from pg_trigger
                    where tgrelid = v_oid and tgname = 'londiste_deny_writes')
      into v_has;
    if i_deny and not v_has then
        execute format('create trigger londiste_deny_writes before insert or update or delete on %s'
                       ' for each row execute function londiste.deny_trigger()', v_oid::regclass);
        execute format('create trigger londiste_deny_truncate before truncate on %s'
                       ' for each statement execute function londiste.deny_trigger()', v_oid::regclass);
        return 1;
    elsif not i_deny and v_has then
        execute format('drop trigger londiste_deny_writes on %s', v_oid::regclass);
        execute format('drop trigger if exists londiste_deny_truncate on %s', v_oid::regclass);
        return 1;
    end if;
    return 0;
end;
$$ language plpgsql;
