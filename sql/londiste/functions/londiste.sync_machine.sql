-- ----------------------------------------------------------------------
-- The table-sync machine's facts for SQL.  Generated from
-- shared/londiste/sync-machine.ts (shared/londiste/sync-machine-sql.ts)
-- by `npm run docs:machine`; do not edit by hand.
-- ----------------------------------------------------------------------

-- ----------------------------------------------------------------------
-- Function: londiste.sync_state_text(i_sync)
--
--      The merge_state text of a persisted machine state (sync_state).
--
-- Returns:
--      the text; NULL for (none); '<invalid ...>' for a state the machine
--      does not have (it matches no merge_state).
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.sync_state_text(i_sync jsonb)
returns text as $$
    select case i_sync->>'state'
        when 'none' then null
        when 'in-copy' then 'in-copy'
        when 'catching-up' then 'catching-up'
        when 'wanna-sync' then 'wanna-sync:' || (i_sync->'context'->>'tick')
        when 'do-sync' then 'do-sync:' || (i_sync->'context'->>'tick')
        when 'ok' then 'ok'
        when 'error' then 'error'
        else '<invalid ' || coalesce(i_sync->>'state', 'NULL') || '>'
    end;
$$ language sql immutable;

-- ----------------------------------------------------------------------
-- Function: londiste.sync_state_of_text(i_text)
--
--      The machine state a merge_state text stands for ('?' is the legacy
--      form of ok).
--
-- Returns:
--      the state name; NULL when the text is no state.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.sync_state_of_text(i_text text)
returns text as $$
    select case
        when i_text is null then 'none'
        when i_text = 'in-copy' then 'in-copy'
        when i_text = 'catching-up' then 'catching-up'
        when i_text ~ '^wanna-sync:[0-9]+$' then 'wanna-sync'
        when i_text ~ '^do-sync:[0-9]+$' then 'do-sync'
        when i_text = 'ok' then 'ok'
        when i_text = 'error' then 'error'
        when i_text = '?' then 'ok'
    end;
$$ language sql immutable;

-- ----------------------------------------------------------------------
-- Function: londiste.sync_sql_write(i_from_state, i_to_text)
--
--      The machine's move for a plain-SQL write of merge_state: in state
--      i_from_state, writing i_to_text is the event given, which leads to
--      the persisted state given.
--
-- Returns:
--      (event, to_sync); no row when the machine has no such move.
--
-- Calls:
--      None
--
-- Tables directly manipulated:
--      None
-- ----------------------------------------------------------------------
create or replace function londiste.sync_sql_write(
    in i_from_state text, in i_to_text text,
    out event jsonb, out to_sync jsonb)
returns setof record as $$
    select w.event::jsonb, w.to_sync::jsonb
      from (values
        ('none', 'ok', '{"type":"EXPECT_SYNC"}', '{"state":"ok","context":{"tick":null,"snapshot":null,"fenceTick":null,"error":null,"errorIn":null}}'),
        ('in-copy', null, '{"type":"RESYNC"}', '{"state":"none","context":{"tick":null,"snapshot":null,"fenceTick":null,"error":null,"errorIn":null}}'),
        ('catching-up', null, '{"type":"RESYNC"}', '{"state":"none","context":{"tick":null,"snapshot":null,"fenceTick":null,"error":null,"errorIn":null}}'),
        ('wanna-sync', null, '{"type":"RESYNC"}', '{"state":"none","context":{"tick":null,"snapshot":null,"fenceTick":null,"error":null,"errorIn":null}}'),
        ('do-sync', null, '{"type":"RESYNC"}', '{"state":"none","context":{"tick":null,"snapshot":null,"fenceTick":null,"error":null,"errorIn":null}}'),
        ('ok', null, '{"type":"RESYNC"}', '{"state":"none","context":{"tick":null,"snapshot":null,"fenceTick":null,"error":null,"errorIn":null}}'),
        ('error', null, '{"type":"RESYNC"}', '{"state":"none","context":{"tick":null,"snapshot":null,"fenceTick":null,"error":null,"errorIn":null}}')
      ) as w (from_state, to_text, event, to_sync)
     where w.from_state = i_from_state and w.to_text is not distinct from i_to_text;
$$ language sql immutable;
