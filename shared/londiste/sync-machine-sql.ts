/**
 * The table-sync machine's facts that Postgres needs, as SQL functions
 * built from the machine definition itself, so a plain-SQL write of
 * londiste.subscriber_table.merge_state is judged by the machine and not by
 * a hand copy of it (sql/londiste/functions/londiste.sync_machine.sql is
 * this output; a test keeps the two in step). Pure.
 *
 *  - londiste.sync_state_text(sync_state): the merge_state text of a
 *    persisted machine state (what the column must hold);
 *  - londiste.sync_state_of_text(merge_state): the state a text stands for
 *    (NULL when the text is not a valid state);
 *  - londiste.sync_sql_write(from_state, new_text): the machine event a
 *    write of new_text into merge_state stands for in from_state, and the
 *    persisted state it leads to; no row when the machine has no such move.
 */
import { quoteLiteral } from "../db/sql-text.ts";
import {
  decide,
  EMPTY_CONTEXT,
  type PersistedSync,
  stateText,
  stateTextForm,
  SYNC_STATES,
  type SyncEvent,
  type SyncStateName,
} from "./sync-machine.ts";

/**
 * The events a person can ask for by writing merge_state alone: they carry
 * no data (a tick, a snapshot, a message) that the text could not give.
 * The others are the copy's and replay's, which do the work that makes them
 * true. REMOVE is a DELETE of the row, not a write of the column.
 */
const SQL_WRITE_EVENTS: SyncEvent[] = [{ type: "RESYNC" }, { type: "EXPECT_SYNC" }];

/** Any tick will do: the events above do not depend on it (the generator checks). */
function sample(state: SyncStateName, tick: number): PersistedSync {
  return { state, context: { ...EMPTY_CONTEXT, tick: stateTextForm(state)?.withTick ? tick : null } };
}

export interface SqlWrite {
  from: SyncStateName;
  toText: string | null;
  event: SyncEvent;
  to: PersistedSync;
}

/** Every (state, merge_state write) the machine accepts, with its event and the state it leads to. */
export function sqlWrites(): SqlWrite[] {
  const out: SqlWrite[] = [];
  for (const from of SYNC_STATES) {
    if (from === "removed") continue;
    for (const event of SQL_WRITE_EVENTS) {
      const a = decide(sample(from, 1), event);
      const b = decide(sample(from, 2), event);
      if (!a.accepted || !b.accepted) continue;
      if (JSON.stringify(a.next) !== JSON.stringify(b.next)) throw new Error(`${event.type} in ${from} depends on the tick: not writable by SQL`);
      if (a.next.state === "removed" || a.next.state === from) continue;
      out.push({ from, toText: stateText(a.next), event, to: a.next });
    }
  }
  return out;
}

const lit = (v: string | null) => (v === null ? "null" : quoteLiteral(v));

export function machineSql(): string {
  const textCases: string[] = [];
  const ofTextCases: string[] = [];
  for (const state of SYNC_STATES) {
    const form = stateTextForm(state);
    if (state === "removed") continue;
    if (!form) {
      textCases.push(`        when ${lit(state)} then null`);
      ofTextCases.push(`        when i_text is null then ${lit(state)}`);
    } else if (form.withTick) {
      textCases.push(`        when ${lit(state)} then ${lit(`${form.text}:`)} || (i_sync->'context'->>'tick')`);
      ofTextCases.push(`        when i_text ~ ${lit(`^${form.text}:[0-9]+$`)} then ${lit(state)}`);
    } else {
      textCases.push(`        when ${lit(state)} then ${lit(form.text)}`);
      ofTextCases.push(`        when i_text = ${lit(form.text)} then ${lit(state)}`);
    }
  }
  const rows = sqlWrites().map(
    (w) => `        (${lit(w.from)}, ${lit(w.toText)}, ${lit(JSON.stringify(w.event))}, ${lit(JSON.stringify(w.to))})`,
  );
  return `-- ----------------------------------------------------------------------
-- The table-sync machine's facts for SQL.  Generated from
-- shared/londiste/sync-machine.ts (shared/londiste/sync-machine-sql.ts)
-- by \`npm run docs:machine\`; do not edit by hand.
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
${textCases.join("\n")}
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
${ofTextCases.join("\n")}
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
${rows.join(",\n")}
      ) as w (from_state, to_text, event, to_sync)
     where w.from_state = i_from_state and w.to_text is not distinct from i_to_text;
$$ language sql immutable;
`;
}
