/**
 * Which tables a request is about and whether each can be compared: the
 * subscriber's set (default: all of it), names canonicalised the way
 * londiste stores them, then each table's plan from both catalogs at the
 * consistent point.
 */
import type pg from "pg";
import { canonicalName, subscriberTables } from "../../shared/londiste/catalog.ts";
import { describeTable } from "../../shared/londiste/compare/describe.ts";
import { planTable, type PlanResult } from "../../shared/londiste/compare/plan.ts";
import { loadTableSync } from "../../shared/londiste/sync-store.ts";
import { fromStateText, isComparable, replayApplies } from "../../shared/londiste/sync-machine.ts";

export interface Target {
  table: string;
  dest: string;
  state: string | null;
  /** Named in the request (a refusal is then a failure; otherwise the table is skipped). */
  named: boolean;
}

export type Resolved = { ok: true; target: Target } | { ok: false; table: string; reason: string };

export async function resolveTables(subscriber: pg.Pool, queue: string, requested: string[] | undefined): Promise<Resolved[]> {
  const set = await subscriberTables(subscriber, queue);
  const byName = new Map(set.map((t) => [t.table, t]));
  if (!requested || requested.length === 0) {
    return set.map((t) => ({ ok: true, target: { table: t.table, dest: t.dest, state: t.state, named: false } }));
  }
  const out: Resolved[] = [];
  const seen = new Set<string>();
  for (const name of requested) {
    let canonical: string;
    try {
      canonical = await canonicalName(subscriber, name);
    } catch (error) {
      out.push({ ok: false, table: name, reason: `${name}: ${(error as Error).message}` });
      continue;
    }
    if (seen.has(canonical)) continue;
    seen.add(canonical);
    const t = byName.get(canonical);
    if (!t) out.push({ ok: false, table: canonical, reason: `${canonical}: not replicated by this job (londiste CONFIG subscriber add)` });
    else out.push({ ok: true, target: { table: t.table, dest: t.dest, state: t.state, named: true } });
  }
  return out;
}

/** The table's plan from the two catalogs, and its state, read in the point's transactions. */
export async function planAt(
  provider: pg.ClientBase,
  subscriber: pg.ClientBase,
  queue: string,
  target: Target,
): Promise<PlanResult & { state?: string | null }> {
  // One query at a time per client.
  const [p, s] = await Promise.all([describeTable(provider, target.table), describeTable(subscriber, target.dest)]);
  const current = await loadTableSync(subscriber, queue, target.table);
  if (!current) return { ok: false, reason: `${target.table}: no longer replicated by this job` };
  return { ...planTable(target.table, target.dest, current.stateText, p, s), state: current.stateText };
}

/**
 * A comparable table replay does not apply (error): its rows lag behind
 * by every change since replay stopped on it, so differences found at one
 * tick are not the ones at a later tick, and `repair --apply` merges it
 * whole at the write point and hands it back to replay there (REPAIRED).
 */
export function stoppedTable(state: string | null): boolean {
  try {
    const name = fromStateText(state).state;
    return isComparable(name) && !replayApplies(name);
  } catch {
    return false;
  }
}

/** Said of a table replay does not apply, in compare's and repair's messages. */
export const STOPPED_NOTE = "replay stopped applying it (state error): repair --apply fixes it at a consistent point and replay goes on from there";
