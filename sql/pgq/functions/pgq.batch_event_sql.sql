-- ----------------------------------------------------------------------
-- Function: pgq.batch_event_sql(x_batch_id)
--
--      Builds the query that returns a batch's events.  An event belongs
--      to the batch when its transaction is visible in the batch's end
--      tick snapshot (cur), not visible in its start tick snapshot (prev),
--      and the event is for everybody or for this subscription (retry).
--
--      Such a txid is either >= xmax(prev) or one of xip(prev) that has
--      finished by cur.  The query scans the txid index from a lower
--      bound lo = xmax(prev), lowered to include finished xip(prev)
--      entries that lie close to it; finished entries far below are
--      fetched by an explicit list, so one old long transaction does not
--      widen the range scan.
--
-- Parameters:
--      x_batch_id - an open batch
--
-- Returns:
--      SQL text returning (ev_id, ev_time, ev_txid, ev_retry, ev_type,
--      ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4) in ev_id
--      order.  It contains only literals built here.
--
-- Errors:
--      'batch not found'
--
-- Calls:
--      pgq.batch_event_tables(x_batch_id)
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function pgq.batch_event_sql(x_batch_id bigint)
returns text as $$
declare
    v_b       record;
    v_lo      int8;
    v_hi      int8;
    v_txid    int8;
    v_list    text := '';
    v_cols    text;
    v_owner   text;
    v_range   text;
    v_sql     text := '';
    v_table   text;
begin
    select s.sub_id, pt.tick_snapshot as prev_snap, ct.tick_snapshot as cur_snap
      into v_b
      from pgq.subscription s
      join pgq.tick pt on pt.tick_queue = s.sub_queue and pt.tick_id = s.sub_last_tick
      join pgq.tick ct on ct.tick_queue = s.sub_queue and ct.tick_id = s.sub_next_tick
     where s.sub_batch = x_batch_id;
    if not found then
        raise exception 'batch not found';
    end if;

    v_lo := pg_snapshot_xmax(v_b.prev_snap)::text::int8;
    v_hi := pg_snapshot_xmax(v_b.cur_snap)::text::int8;

    -- transactions running at prev that have finished by cur, newest first
    for v_txid in
        select x::text::int8
          from pg_snapshot_xip(v_b.prev_snap) x
         where not pg_visible_in_snapshot(x, v_b.prev_snap)
           and pg_visible_in_snapshot(x, v_b.cur_snap)
         order by 1 desc
    loop
        if v_txid >= v_lo - 100 then
            v_lo := v_txid;
        else
            v_list := v_list || case when v_list = '' then '' else ',' end || v_txid;
        end if;
    end loop;

    v_cols := 'select ev_id, ev_time, ev_txid::text::int8 as ev_txid, ev_retry,'
           || ' ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4';
    v_owner := '(ev_owner is null or ev_owner = ' || v_b.sub_id || ')';
    v_range := 'ev_txid >= ' || quote_literal(v_lo::text) || '::xid8'
            || ' and ev_txid < ' || quote_literal(v_hi::text) || '::xid8'
            || ' and pg_visible_in_snapshot(ev_txid, '
            || quote_literal(v_b.cur_snap::text) || '::pg_snapshot)'
            || ' and not pg_visible_in_snapshot(ev_txid, '
            || quote_literal(v_b.prev_snap::text) || '::pg_snapshot)';

    for v_table in select t from pgq.batch_event_tables(x_batch_id) t loop
        if v_sql <> '' then
            v_sql := v_sql || ' union all ';
        end if;
        v_sql := v_sql || v_cols || ' from ' || v_table
              || ' where ' || v_owner || ' and ' || v_range;
        if v_list <> '' then
            v_sql := v_sql || ' union all ' || v_cols || ' from ' || v_table
                  || ' where ' || v_owner
                  || ' and ev_txid = any(' || quote_literal('{' || v_list || '}') || '::xid8[])';
        end if;
    end loop;

    return v_sql || ' order by 1';
end;
$$ language plpgsql stable;
