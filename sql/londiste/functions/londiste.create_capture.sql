-- ----------------------------------------------------------------------
-- Function: londiste.create_capture(i_queue_name, i_table [, i_mode])
--
--      Creates (or re-creates, after the table's columns changed) the
--      change capture of a table: a trigger function generated for this
--      table and queue, and triggers calling it.  Two modes, the same
--      events (docs/londiste.md, "Capture modes"):
--        row        (the default) an AFTER ROW trigger for
--                   INSERT/UPDATE/DELETE: one event insert per row;
--        statement  AFTER STATEMENT triggers for INSERT, UPDATE and DELETE
--                   over transition tables: one event insert per statement
--                   for all its rows, in the order the row trigger would
--                   have written them (an UPDATE's old and new rows are
--                   paired by position in the transition tables).  Faster
--                   for statements of many rows, slower for one row;
--                   refused for a partitioned table, a partition or a table
--                   in an inheritance tree (statement triggers do not fire
--                   for writes made through a partition or child).
--      Both modes add an AFTER STATEMENT trigger for TRUNCATE.  The
--      2-argument form keeps the mode the table already has (row for a
--      new capture).
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
--      Events are written the way pgq.insert_event_raw writes them, but by
--      one static INSERT through pgq.event_template per event (row mode)
--      or per statement (statement mode), with the queue id, its event
--      sequence and the slot read fixed into the generated text: a call of
--      pgq.insert_event_raw per row cost a second PL/pgSQL function, a
--      SELECT of pgq.queue by name and a text-to-regclass cast of the
--      sequence name on every row (about a fifth of the trigger's cost).
--      After pgq.drop_queue the generated function fails (its event table
--      is gone) until the capture is dropped.
--
-- Parameters:
--      i_queue_name - queue the events go to
--      i_table      - the table
--      i_mode       - 'row' or 'statement'; NULL (the 2-argument form):
--                     the table's current mode, row for a new capture
--
-- Returns:
--      The trigger name.
--
-- Errors:
--      'no such event queue', 'need key column' (the Skytools 2 texts; the
--      queue or table in the DETAIL); 'unknown capture mode'; 'statement
--      capture needs a plain table'
--
-- Calls:
--      londiste.quote_table(i_table)
--
-- Tables directly manipulated:
--      insert - (the generated function) pgq.event_<queue id>_<n>,
--               through pgq.event_template
--      create function - londiste.capture_<table oid>_<queue id> (given to
--                        the owner of schema londiste when the caller is
--                        only a member of that role)
--      drop/create trigger - londiste_capture_<queue id> (row: I/U/D;
--                            statement: I), londiste_capture_<queue id>_update
--                            and _delete (statement mode) and
--                            londiste_capture_<queue id>_truncate on i_table
-- ----------------------------------------------------------------------
create or replace function londiste.create_capture(i_queue_name text, i_table regclass, i_mode text)
returns text as $fn$
declare
    v_seq         text;
    v_mode        text;
    v_inherits    boolean;
    v_cols_sql    text;
    v_slot_rc     text;
    v_slot_share  text;
    v_head        text;
    v_ops         text[];
    v_body        text;
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
    select queue_id, queue_event_seq into v_qid, v_seq from pgq.queue where queue_name = i_queue_name;
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

    -- The 2-argument form keeps the mode the table has (re-creating after
    -- a column change must not switch it back to row triggers).
    v_mode := coalesce(i_mode, case when exists (
                  select 1 from pg_catalog.pg_trigger
                   where tgrelid = i_table and tgname = left(v_trigger, 56) || '_update')
              then 'statement' else 'row' end);
    if v_mode not in ('row', 'statement') then
        raise exception 'unknown capture mode' using detail = format('mode %s: use row or statement', v_mode);
    end if;
    if v_mode = 'statement' then
        select c.relkind = 'p' or c.relispartition
               or exists (select 1 from pg_catalog.pg_inherits h where h.inhrelid = i_table or h.inhparent = i_table)
          into v_inherits
          from pg_catalog.pg_class c where c.oid = i_table;
        if v_inherits then
            -- Statement triggers do not fire for writes made through a
            -- partition or a child, and transition tables are not allowed there.
            raise exception 'statement capture needs a plain table'
                using detail = format('%s is partitioned, a partition or in an inheritance tree: use mode row', v_name);
        end if;
    end if;

    -- One INSERT per event through the root (a cached plan, no dynamic
    -- SQL); the slot read and the event sequence are fixed in the text,
    -- so no pgq.queue lookup by name and no text-to-regclass per row.
    -- In READ COMMITTED the slot is read plainly; otherwise FOR SHARE, as
    -- in pgq.insert_event_raw: a snapshot may predate a rotation.  The
    -- row change that fired the trigger has already taken the txid, so
    -- the txid precedes the slot read, as the event tables require.
    v_cols_sql := 'insert into pgq.event_template (ev_id, ev_time, ev_txid, ev_type, ev_data,'
               || ' ev_extra1, ev_extra2, ev_extra3, ev_extra4, ev_queue, ev_slot)';
    v_slot_rc := format('(select q.queue_cur_table::int2 from pgq.queue q where q.queue_id = %s)', v_qid);
    v_slot_share := format('(select q.queue_cur_table::int2 from pgq.queue q where q.queue_id = %s for share)', v_qid);
    v_head := format('nextval(%L::regclass), now(), pg_catalog.pg_current_xact_id()', v_seq);

    if v_mode = 'row' then
        v_old_key := 'row(' || (select string_agg(format('OLD.%I', k), ', ' order by n)
                                  from unnest(v_keys) with ordinality as u(k, n)) || ')::text';
        v_ops := array[
            ['UPDATE', format('values (%s, ''U'', NEW::text, %L, %L, %s, %L, %s, %%s)',
                              v_head, v_name, v_cols::text, v_old_key, v_keys::text, v_qid)],
            ['INSERT', format('values (%s, ''I'', NEW::text, %L, %L, null, %L, %s, %%s)',
                              v_head, v_name, v_cols::text, v_keys::text, v_qid)],
            ['DELETE', format('values (%s, ''D'', %s, %L, %L, null, %L, %s, %%s)',
                              v_head, v_old_key, v_name, v_keys::text, v_keys::text, v_qid)]];
    else
        -- Transition tables: the old and new rows of an UPDATE are stored
        -- pairwise in the same order, the order in which the row trigger
        -- would have fired, so they are paired by position; event ids are
        -- drawn in that order (a volatile target list is evaluated after
        -- the sort).
        v_old_key := 'row(' || (select string_agg(format('londiste_o.%I', k), ', ' order by n)
                                  from unnest(v_keys) with ordinality as u(k, n)) || ')::text';
        v_ops := array[
            ['UPDATE', format('select %s, ''U'', londiste_n.londiste_d, %L, %L, londiste_o.londiste_k, %L, %s, %%s'
                              ' from (select row_number() over () as londiste_i, londiste_n::text as londiste_d'
                              ' from londiste_new londiste_n) londiste_n'
                              ' join (select row_number() over () as londiste_i, %s as londiste_k'
                              ' from londiste_old londiste_o) londiste_o using (londiste_i)'
                              ' order by londiste_i',
                              v_head, v_name, v_cols::text, v_keys::text, v_qid, v_old_key)],
            ['INSERT', format('select %s, ''I'', londiste_n::text, %L, %L, null, %L, %s, %%s'
                              ' from londiste_new londiste_n',
                              v_head, v_name, v_cols::text, v_keys::text, v_qid)],
            ['DELETE', format('select %s, ''D'', %s, %L, %L, null, %L, %s, %%s'
                              ' from londiste_old londiste_o',
                              v_head, v_old_key, v_name, v_keys::text, v_keys::text, v_qid)]];
    end if;

    v_body := '';
    for i in 1 .. 3 loop
        v_body := v_body || format($b$
    %s TG_OP = %L then
        if pg_catalog.current_setting('transaction_isolation') = 'read committed' then
            %s
            %s;
        else
            %s
            %s;
        end if;$b$,
            case when i = 1 then 'if' else 'elsif' end, v_ops[i][1],
            v_cols_sql, format(v_ops[i][2], v_slot_rc),
            v_cols_sql, format(v_ops[i][2], v_slot_share));
    end loop;
    v_body := v_body || format($b$
    else
        if pg_catalog.current_setting('transaction_isolation') = 'read committed' then
            %s
            values (%s, 'R', '', %L, null, null, null, %s, %s);
        else
            %s
            values (%s, 'R', '', %L, null, null, null, %s, %s);
        end if;
    end if;$b$,
        v_cols_sql, v_head, v_name, v_qid, v_slot_rc,
        v_cols_sql, v_head, v_name, v_qid, v_slot_share);

    execute format($f$
create or replace function %s() returns trigger
language plpgsql
%s
as $body$
begin%s
    return null;
end
$body$
$f$, v_func, v_set, v_body);

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
    execute format('drop trigger if exists %I on %s', left(v_trigger, 56) || '_update', i_table);
    execute format('drop trigger if exists %I on %s', left(v_trigger, 56) || '_delete', i_table);
    execute format('drop trigger if exists %I on %s', v_trigger || '_truncate', i_table);
    if v_mode = 'row' then
        execute format('create trigger %I after insert or update or delete on %s for each row execute function %s()',
                       v_trigger, i_table, v_func);
    else
        -- A trigger with transition tables takes one event each.
        execute format('create trigger %I after insert on %s referencing new table as londiste_new'
                       ' for each statement execute function %s()', v_trigger, i_table, v_func);
        execute format('create trigger %I after update on %s referencing old table as londiste_old new table as londiste_new'
                       ' for each statement execute function %s()', left(v_trigger, 56) || '_update', i_table, v_func);
        execute format('create trigger %I after delete on %s referencing old table as londiste_old'
                       ' for each statement execute function %s()', left(v_trigger, 56) || '_delete', i_table, v_func);
    end if;
    execute format('create trigger %I after truncate on %s for each statement execute function %s()',
                   v_trigger || '_truncate', i_table, v_func);
    return v_trigger;
end;
$fn$ language plpgsql;

create or replace function londiste.create_capture(i_queue_name text, i_table regclass)
returns text as $$
    select londiste.create_capture(i_queue_name, i_table, null);
$$ language sql;
