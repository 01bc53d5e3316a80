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
--      lc_monetary C: the output half of the value-text contract, owned by
--      shared/db/value-text.ts, which test/db/value-text.test.ts checks
--      this function against), so it reads back into the same value
--      whatever the writer's or the applier's session settings: NULL and '' differ,
--      -0, NaN and Infinity survive, arrays, composites, enums, json and
--      bytea travel as their exact text.
--      The generated function pins (with SET clauses, which cost time on
--      every row: about 0.3 us each plus 0.3 us for having any) only the
--      settings that the output of the table's column types depends on,
--      looking through domains, arrays, composites and ranges: date/time
--      types pin DateStyle, IntervalStyle and TimeZone; float4/float8 and
--      the geometric types extra_float_digits; bytea bytea_output; money
--      lc_monetary; types known not to depend on any of them (integers,
--      numeric, text, bool, uuid, json, network, bit, enums, ...) nothing;
--      any other type, e.g. one from an extension, all six.
--      The column list is fixed into the generated function, and so is the
--      choice of pinned settings: after ALTER COLUMN ... TYPE the capture
--      must be re-created (as after adding a column), or a column that
--      became, say, timestamptz would be written under the writer's
--      session settings.
--      A column added later makes ev_data longer than ev_extra2, which
--      replay reports as an error for that table until the capture is
--      re-created (londiste.create_capture again).
--      Events go in through pgq.insert_event_raw, called as a PL/pgSQL
--      assignment (a simple expression: no executor start-up of a SELECT
--      as PERFORM would need).
--
-- Parameters:
--      i_queue_name - queue the events go to
--      i_table      - the table
--
-- Returns:
--      The trigger name.
--
-- Errors:
--      'no such event queue', 'need key column' (the Skytools 2 texts; the
--      queue or table in the DETAIL)
--
-- Calls:
--      londiste.quote_table(i_table); the generated trigger function calls
--      pgq.insert_event_raw(i_queue_name, ...) for every row change
--
-- Tables directly manipulated:
--      create function - londiste.capture_<table oid>_<queue id> (given to
--                        the owner of schema londiste when the caller is
--                        only a member of that role)
--      drop/create trigger - londiste_capture_<queue id> and
--                            londiste_capture_<queue id>_truncate on i_table
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
    v_pins      text[];
    v_set       text;
    v_owner     name;
begin
    select queue_id into v_qid from pgq.queue where queue_name = i_queue_name;
    if not found then
        raise exception 'no such event queue' using detail = format('queue %s', i_queue_name);
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
        raise exception 'need key column' using detail = format('%s has no primary key', v_name);
    end if;

    select 'row(' || string_agg(format('OLD.%I', k), ', ' order by n) || ')::text'
      into v_old_key
      from unnest(v_keys) with ordinality as u(k, n);

    -- The settings the column types' text depends on (see the header).
    with recursive types(oid) as (
        select a.atttypid
          from pg_attribute a
         where a.attrelid = i_table and a.attnum > 0 and not a.attisdropped
        union
        select inner_t.oid
          from types
          join pg_type t on t.oid = types.oid
         cross join lateral (
                select t.typbasetype where t.typtype = 'd'
                union all
                select t.typelem where t.typtype = 'b' and t.typcategory = 'A' and t.typelem <> 0
                union all
                select a.atttypid from pg_attribute a
                 where t.typtype = 'c' and a.attrelid = t.typrelid and a.attnum > 0 and not a.attisdropped
                union all
                select r.rngsubtype from pg_range r
                 where (t.typtype = 'r' and r.rngtypid = t.oid) or (t.typtype = 'm' and r.rngmultitypid = t.oid)
               ) inner_t(oid)
    )
    select coalesce(array_agg(distinct pin), '{}') into v_pins
      from types
      join pg_type t on t.oid = types.oid
     cross join lateral unnest(case
            -- containers: what they contain decides; enums print their labels
            when t.typtype in ('d', 'c', 'r', 'm', 'e') then '{}'
            when t.typtype = 'b' and t.typcategory = 'A' and t.typelem <> 0 then '{}'
            when t.typnamespace <> 'pg_catalog'::regnamespace or t.typtype <> 'b' then
                 '{datestyle,intervalstyle,timezone,extra_float_digits,bytea_output,lc_monetary}'
            when t.typname in ('date', 'time', 'timetz', 'timestamp', 'timestamptz', 'interval') then
                 '{datestyle,intervalstyle,timezone}'
            when t.typname in ('float4', 'float8', 'point', 'lseg', 'line', 'box', 'path', 'polygon', 'circle') then
                 '{extra_float_digits}'
            when t.typname = 'bytea' then '{bytea_output}'
            when t.typname = 'money' then '{lc_monetary}'
            when t.typname in ('bool', 'int2', 'int4', 'int8', 'numeric', 'oid', 'text', 'varchar', 'bpchar', 'name',
                               'char', 'uuid', 'json', 'jsonb', 'jsonpath', 'xml', 'inet', 'cidr', 'macaddr',
                               'macaddr8', 'bit', 'varbit', 'pg_lsn', 'tsvector', 'tsquery', 'tid', 'xid', 'xid8',
                               'cid', 'pg_snapshot', 'txid_snapshot', 'regclass', 'regcollation', 'regconfig',
                               'regdictionary', 'regnamespace', 'regoper', 'regoperator', 'regproc',
                               'regprocedure', 'regrole', 'regtype') then '{}'
            else '{datestyle,intervalstyle,timezone,extra_float_digits,bytea_output,lc_monetary}'
          end::text[]) pin;
    select coalesce(string_agg(format('set %s = %L', k, v), ' ' order by n), '') into v_set
      from unnest('{datestyle,intervalstyle,extra_float_digits,timezone,bytea_output,lc_monetary}'::text[],
                  '{"ISO, YMD",postgres,3,UTC,hex,C}'::text[]) with ordinality as u(k, v, n)
     where k = any(v_pins);

    v_func := format('londiste.%I', 'capture_' || i_table::oid || '_' || v_qid);
    v_trigger := left('londiste_capture_' || v_qid, 63);

    execute format($f$
create or replace function %s() returns trigger
language plpgsql
%s
as $body$
declare
    v_ev_id  int8;
begin
    if TG_OP = 'INSERT' then
        v_ev_id := pgq.insert_event_raw(%L, null, now(), null, null, 'I', NEW::text, %L, %L, null, %L);
    elsif TG_OP = 'UPDATE' then
        v_ev_id := pgq.insert_event_raw(%L, null, now(), null, null, 'U', NEW::text, %L, %L, %s, %L);
    elsif TG_OP = 'DELETE' then
        v_ev_id := pgq.insert_event_raw(%L, null, now(), null, null, 'D', %s, %L, %L, null, %L);
    else
        v_ev_id := pgq.insert_event_raw(%L, null, now(), null, null, 'R', '', %L, null, null, null);
    end if;
    return null;
end
$body$
$f$,
        v_func, v_set,
        i_queue_name, v_name, v_cols::text, v_keys::text,
        i_queue_name, v_name, v_cols::text, v_old_key, v_keys::text,
        i_queue_name, v_old_key, v_name, v_keys::text, v_keys::text,
        i_queue_name, v_name);

    -- The generated function belongs to the schema's owner whoever creates
    -- it (a member of that role, sql/londiste/roles.sql), so another member
    -- may re-create or drop it.
    select r.rolname into v_owner
      from pg_catalog.pg_namespace n join pg_catalog.pg_roles r on r.oid = n.nspowner
     where n.nspname = 'londiste';
    if v_owner <> current_user and pg_catalog.pg_has_role(v_owner, 'MEMBER') then
        execute format('alter function %s() owner to %I', v_func, v_owner);
    end if;

    execute format('drop trigger if exists %I on %s', v_trigger, i_table);
    execute format('drop trigger if exists %I on %s', v_trigger || '_truncate', i_table);
    execute format('create trigger %I after insert or update or delete on %s for each row execute function %s()',
                   v_trigger, i_table, v_func);
    execute format('create trigger %I after truncate on %s for each statement execute function %s()',
                   v_trigger || '_truncate', i_table, v_func);
    return v_trigger;
end;
$fn$ language plpgsql;
