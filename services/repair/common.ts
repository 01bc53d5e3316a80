/**
 * What compare and repair share: request fields, the replay lag check,
 * opening consistent points, per-table outcomes and savepoints.
 */
import { randomBytes } from "node:crypto";
import type { FieldSpec } from "../../shared/bus/validate.ts";
import { CommandError } from "../../shared/bus/replies.ts";
import { comparableStateText, type TablePlan } from "../../shared/londiste/compare/plan.ts";
import { getConsumerInfo, getQueueInfo } from "../../shared/pgq/index.ts";
import type { RepairContext } from "./context.ts";
import { type ConsistentPoint, lockPoint, type PointMethod, snapshotPoint } from "./point.ts";
import { planAt, type Resolved, resolveTables, type Target } from "./tables.ts";

export const COMMON_FIELDS: Record<string, FieldSpec> = {
  tables: { type: "string[]", description: "tables to compare (default: every table of the job)" },
  lock: { type: "boolean", description: "the original method: LOCK TABLE IN SHARE MODE on the provider, per table" },
  force: { type: "boolean", description: "go on even when replay lags more than the ticker lag + 10 s" },
  hold_seconds: { type: "integer", min: 2, max: 3600, description: "expiry of the hold on replay (pushed forward while working); default 60" },
  wait_seconds: {
    type: "integer",
    min: 1,
    max: 86400,
    description: "how long to wait for replay to reach the consistent point (default 60; with lock: for the whole lock, default 10)",
  },
};

export interface CommonOptions {
  tables: string[] | undefined;
  method: PointMethod;
  force: boolean;
  holdSeconds: number;
  waitMs: number;
}

export function commonOptions(request: Record<string, unknown>): CommonOptions {
  const method: PointMethod = request.lock === true ? "lock" : "snapshot";
  return {
    tables: request.tables as string[] | undefined,
    method,
    force: request.force === true,
    holdSeconds: (request.hold_seconds as number | undefined) ?? 60,
    waitMs: ((request.wait_seconds as number | undefined) ?? (method === "lock" ? 10 : 60)) * 1000,
  };
}

/** Per table, as the londiste CLI prints lists: name, ok, message; plus the details. */
export interface TableOutcome {
  name: string;
  ok: boolean;
  status: string;
  message: string;
  warnings?: string[];
  [detail: string]: unknown;
}

/** A refusal; a table that is only not in sync yet and was not named is skipped instead (not a failure). */
export function refusedOutcome(table: string, reason: string, named: boolean, notSynced = false): TableOutcome {
  return named || !notSynced
    ? { name: table, ok: false, status: "refused", message: reason }
    : { name: table, ok: true, status: "skipped", message: `skipped: ${reason}` };
}

export function failedOutcome(table: string, error: unknown): TableOutcome {
  return { name: table, ok: false, status: "failed", message: error instanceof Error ? error.message : String(error) };
}

/** As in Skytools (docs/protocols.md, "Compare and repair: one consistent point"): a replay lagging more than the ticker lag + 10 s is refused unless forced. */
export async function checkLag(ctx: RepairContext, force: boolean): Promise<void> {
  const [consumer] = await getConsumerInfo(ctx.provider, ctx.queue, ctx.consumer);
  if (!consumer) throw new CommandError("not_found", `replay's consumer ${ctx.consumer} is not registered on queue ${ctx.queue}`);
  if (force) return;
  const [queue] = await getQueueInfo(ctx.provider, ctx.queue);
  const tickerLag = queue?.tickerLagSeconds ?? 0;
  if (consumer.lagSeconds !== null && consumer.lagSeconds > tickerLag + 10) {
    throw new CommandError(
      "conflict",
      `Consumer lagging too much, cannot proceed: replay lags ${consumer.lagSeconds.toFixed(1)} s, the ticker ${tickerLag.toFixed(1)} s (force to go on)`,
    );
  }
}

export function newOwner(ctx: RepairContext): string {
  return `${ctx.instance}:${randomBytes(4).toString("hex")}`;
}

export function openPoint(
  ctx: RepairContext,
  options: CommonOptions,
  owner: string,
  forWrite: boolean,
  table?: string,
): Promise<ConsistentPoint> {
  const pointOptions = { holdSeconds: options.holdSeconds, waitMs: options.waitMs, owner, forWrite };
  return options.method === "lock" ? lockPoint(ctx, table!, pointOptions) : snapshotPoint(ctx, pointOptions);
}

/**
 * Runs work for one table in savepoints on both sides, so a failure of one
 * table (a value that does not print, a statement the subscriber refuses)
 * leaves the point usable for the next.
 */
export async function inSavepoints<T>(point: ConsistentPoint, work: () => Promise<T>): Promise<T> {
  await Promise.all([point.provider.query("savepoint londiste_table"), point.subscriber.query("savepoint londiste_table")]);
  try {
    const result = await work();
    await Promise.all([point.provider.query("release savepoint londiste_table"), point.subscriber.query("release savepoint londiste_table")]);
    return result;
  } catch (error) {
    await Promise.all([
      point.provider.query("rollback to savepoint londiste_table").catch(() => {}),
      point.subscriber.query("rollback to savepoint londiste_table").catch(() => {}),
    ]);
    throw error;
  }
}

export type PlannedWork<T> = (point: ConsistentPoint, plan: TablePlan, target: Target) => Promise<T>;

/**
 * The tables of a request, each taken through `work` at a consistent
 * point: one point for all tables (snapshot method) or one per table
 * (lock). Refused tables get their outcome without a point.
 */
export async function forEachTable(
  ctx: RepairContext,
  options: CommonOptions,
  owner: string,
  work: PlannedWork<TableOutcome>,
): Promise<TableOutcome[]> {
  const resolved: Resolved[] = await resolveTables(ctx.subscriber, ctx.queue, options.tables);
  const outcomes: Array<TableOutcome | undefined> = resolved.map((r) => (r.ok ? undefined : refusedOutcome(r.table, r.reason, true)));
  const todo = resolved.flatMap((r, i) => (r.ok ? [{ i, target: r.target }] : []));
  if (todo.length === 0) return outcomes as TableOutcome[];
  await checkLag(ctx, options.force);

  const one = async (point: ConsistentPoint, i: number, target: Target) => {
    try {
      outcomes[i] = await inSavepoints(point, async () => {
        const planned = await planAt(point.provider, point.subscriber, ctx.queue, target);
        if (!planned.ok) return refusedOutcome(target.table, planned.reason, target.named, planned.notSynced);
        // The state at the point, not the one when the request was read.
        const outcome = await work(point, planned.plan, { ...target, state: planned.state ?? null });
        if (planned.plan.warnings.length > 0) outcome.warnings = planned.plan.warnings;
        return outcome;
      });
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      outcomes[i] = failedOutcome(target.table, error);
    }
  };

  if (options.method === "snapshot") {
    const point = await openPoint(ctx, options, owner, false);
    try {
      for (const { i, target } of todo) await one(point, i, target);
    } finally {
      await point.close();
    }
  } else {
    for (const { i, target } of todo) {
      // The lock needs the provider's canonical name: the catalog's, checked before anything is locked.
      if (!comparableStateText(target.state)) {
        outcomes[i] = refusedOutcome(target.table, `${target.table}: state ${target.state ?? "(none)"}: not in sync yet (to be copied or being copied), nothing to compare`, target.named, true);
        continue;
      }
      let point: ConsistentPoint;
      try {
        point = await openPoint(ctx, options, owner, false, target.table);
      } catch (error) {
        if (ctx.signal.aborted || !(error instanceof CommandError) || error.code === "conflict") throw error;
        outcomes[i] = error.code === "not_found" ? refusedOutcome(target.table, error.message, target.named) : failedOutcome(target.table, error);
        continue;
      }
      try {
        await one(point, i, target);
      } finally {
        await point.close();
      }
    }
  }
  return outcomes as TableOutcome[];
}
