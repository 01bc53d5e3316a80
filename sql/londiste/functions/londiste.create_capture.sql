-- ----------------------------------------------------------------------
-- Function: londiste.create_capture(i_queue_name, i_table)
--
--      Creates (or re-creates, after the table's columns changed) the
--      change capture of a table: a trigger function generated for this
--      table and queue, an AFTER ROW trigger for INSERT/UPDATE/DELETE and
--      an AFTER STATEMENT trigger for TRUNCATE.
--
--      Event encoding (one PgQ event per row change, in the writer's
--      transaction):
--        ev_type   'I', 'U', 'D', or 'R' (truncate)
--        ev_data   I, U: the new row as composite text (NEW::text);
--                  D: the old primary key as composite text
--        ev_extra1 the table, londiste.quote_table form
--        ev_extra2 column names of ev_data, as a text[] literal
--        ev_extra3 U: the old primary key as composite text (so key
--                  changes replicate)
--        ev_extra4 primary key column names, as a text[] literal
--      Composite text is each column's own output function, written
--      under fixed settings (DateStyle ISO, IntervalStyle postgres,
--      extra_float_digits 3, TimeZone UTC, bytea_output hex,
--      lc_monetary C), so it reads back into the same value whatever the
--      writer's or the applier's session settings: NULL and '' differ,
--      -0, NaN and Infinity survive, arrays, composites, enums, json and
--      bytea travel as their exact text.
--      The column list is fixed into the generated function: a column
--      added later makes ev_data longer than ev_extra2, which replay
--      reports as an error for that table until the capture is
--      re-created (londiste.create_capture again).
--
-- Parameters:
--      i_queue_name - queue the events go to
--      i_table      - the table
--
-- Returns:
--      The trigger name.
--
-- Errors:
--      'no such event queue: <q>', 'need key column: <table> has no primary key'
-- ----------------------------------------------------------------------
create or replace function londiste.create_capture(i_queue_name text, i_table regclass)
returns text as $fn$
declare
    v_qid       int4;
    v_name      text;
    v_func      text;
    v_trigger   text;
    v_cols      text[];
    v_keys      text[];
    v_old_key   text;
begin
    select queue_id into v_qid from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'no such event queue: %', i_queue_name;
    end if;
    v_name := londiste.quote_table(i_table);

    select array_agg(a.attname::text order by a.attnum) into v_cols
      from pg_attribute a
     where a.attrelid = i_table and a.attnum > 0 and not a.attisdropped;
    select array_agg(a.attname::text order by array_position(i.indkey::int2[], a.attnum)) into v_keys
      from pg_index i
      join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey::int2[])
     where i.indrelid = i_table and i.indisprimary;
    if v_keys is null then
        raise exception 'need key column: % has no primary key', v_name;
    end if;

    select 'row(' || string_agg(format('OLD.%I', k), ', ' order by n) || ')::text'
      into v_old_key
      from unnest(v_keys) with ordinality as u(k, n);

    v_func := format('londiste.%I', 'capture_' || i_table::oid || '_' || v_qid);
    v_trigger := left('londiste_capture_' || v_qid, 63);

    execute format($f$
create or replace function %s() returns trigger
language plpgsql
set datestyle = 'ISO, YMD' set intervalstyle = 'postgres' set extra_float_digits = '3'
set timezone = 'UTC' set bytea_output = 'hex' set lc_monetary = 'C'
as $body$
begin
    if TG_OP = 'INSERT' then
        perform pgq.insert_event_raw(%L, null, now(), null, null, 'I', NEW::text, %L, %L, null, %L);
    elsif TG_OP = 'UPDATE' then
        perform pgq.insert_event_raw(%L, null, now(), null, null, 'U', NEW::text, %L, %L, %s, %L);
    elsif TG_OP = 'DELETE' then
        perform pgq.insert_event_raw(%L, null, now(), null, null, 'D', %s, %L, %L, null, %L);
    else
        perform pgq.insert_event_raw(%L, null, now(), null, null, 'R', '', %L, null, null, null);
    end if;
    return null;
end
$body$
$f$,
        v_func,
        i_queue_name, v_name, v_cols::text, v_keys::text,
        i_queue_name, v_name, v_cols::text, v_old_key, v_keys::text,
        i_queue_name, v_old_key, v_name, v_keys::text, v_keys::text,
        i_queue_name, v_name);

    execute format('drop trigger if exists %I on %s', v_trigger, i_table);
    execute format('drop trigger if exists %I on %s', v_trigger || '_truncate', i_table);
    execute format('create trigger %I after insert or update or delete on %s for each row execute function %s()',
                   v_trigger, i_table, v_func);
    execute format('create trigger %I after truncate on %s for each statement execute function %s()',
                   v_trigger || '_truncate', i_table, v_func);
    return v_trigger;
end;
$fn$ language plpgsql;
