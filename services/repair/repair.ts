/**
 * `repair`: the rows that differ, found by a streaming merge of both sides
 * ordered by primary key at one consistent point (after a checksum shows
 * the table differs at all), turned into INSERT/UPDATE/DELETE statements:
 * written to fix.<table>.sql (only when there are differences), listed in
 * the reply (dry_run), or applied (apply).
 *
 * Applying soundly: the fixes found at tick T are right only for a
 * subscriber at T, but replay goes on after the read (it is held only
 * while the snapshots are taken). Applying them later could undo newer
 * changes (a row deleted on the provider after T would be inserted
 * again). So apply works in two phases: phase 1 finds the keys that
 * differ at T without holding replay (the long merge); phase 2 takes a
 * new consistent point T2 with replay held and its position lock taken in
 * the subscriber's write transaction (or, with --lock, the provider
 * table locked), re-reads only those keys on both sides at T2, and
 * applies the statements for the rows that still differ, in that one
 * transaction. Replay pauses only for phase 2, whose work is proportional
 * to the number of differences, not to the table. Keys that differ at T2
 * but did not at T are new differences and are left for the next run.
 * Every fix must change exactly its one row (fixes.ts), else the table's
 * fixes are rolled back and it is reported failed.
 *
 * A table replay stopped applying (state error) misses every change since
 * it stopped, also those between T and T2, so for it phase 1 is skipped:
 * at T2 it is merged whole and fixed, and REPAIRED (sync-machine.ts) puts
 * it back to ok in the same transaction. Replay, held at T2, applies it
 * again from the batch that starts at T2: no copy. Replay waits for that
 * whole merge.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rm } from "node:fs/promises";
import type { CommandSpec } from "../../shared/bus/command-service.ts";
import { CommandError } from "../../shared/bus/replies.ts";
import { KeyComparator } from "../../shared/londiste/compare/key-order.ts";
import { emptyCounts, type MergeCounts, mergeDiff } from "../../shared/londiste/compare/merge.ts";
import {
  diffKey,
  fixFileHeader,
  fixStatement,
  keyCompareQuery,
  keyFetchQuery,
  mergeQuery,
  type Row,
  type TablePlan,
} from "../../shared/londiste/compare/plan.ts";
import { pairEqual } from "../../shared/londiste/compare/ranges.ts";
import { cursorRows, textRows } from "../../shared/londiste/compare/row-source.ts";
import { COMMON_FIELDS, type CommonOptions, commonOptions, failedOutcome, forEachTable, inSavepoints, newOwner, openPoint, type TableOutcome } from "./common.ts";
import { checksumPair } from "./compare.ts";
import type { RepairContext } from "./context.ts";
import { FixFile, fixDirectory, fixFilePath, LineWriter, readChunks } from "./files.ts";
import { applyFixStatements, type Fix } from "./fixes.ts";
import type { ConsistentPoint } from "./point.ts";
import { planAt, STOPPED_NOTE, stoppedTable, type Target } from "./tables.ts";
import { loadTableSync, writeTransition } from "../../shared/londiste/sync-store.ts";

/** Keys re-read per query in phase 2. */
const APPLY_CHUNK = 500;
/** Most bytes of statements in a dry-run reply (NATS payloads are limited). */
const DRY_RUN_BYTES = 512 * 1024;

interface RepairOptions extends CommonOptions {
  apply: boolean;
  dryRun: boolean;
  dir: string;
  maxStatements: number;
}

function comparator(ctx: RepairContext, plan: TablePlan): KeyComparator {
  return new KeyComparator(plan.keyKinds, async (a, b) => {
    const q = keyCompareQuery(plan, a, b);
    const { rows } = await ctx.provider.query<{ c: number }>(q.text, q.values);
    return rows[0]!.c;
  });
}

const summary = (c: MergeCounts) => `missed: ${c.inserts} inserts, ${c.updates} updates, ${c.deletes} deletes`;

async function* fromArray(rows: Row[]): AsyncGenerator<Row> {
  yield* rows;
}

interface Phase1Sink {
  add(plan: TablePlan, statement: string, key: string[]): Promise<void>;
}

/** Phase 1 for one table: checksum, then (if they differ) the merge. */
async function findDifferences(
  ctx: RepairContext,
  point: ConsistentPoint,
  plan: TablePlan,
  options: RepairOptions,
  spoolPath: string,
): Promise<TableOutcome> {
  const started = Date.now();
  const base = { name: plan.table, tick: point.tick, method: point.method, ...(plan.dest !== plan.table ? { dest: plan.dest } : {}) };
  ctx.progress({ table: plan.table, phase: "checksum", tick: point.tick });
  const sums = await checksumPair(point, plan);
  const counts = emptyCounts();
  const finished = (extra: string) =>
    `finished ${plan.table}: src: ${counts.srcRows} rows, dst: ${counts.dstRows} rows, ${summary(counts)}${extra}`;
  if (pairEqual(sums)) {
    counts.srcRows = sums.provider.rows;
    counts.dstRows = sums.subscriber.rows;
    if (!options.dryRun) await rm(fixFilePath(options.dir, plan.table), { force: true });
    return { ...base, ok: true, status: "equal", message: finished(""), ...countFields(counts), seconds: (Date.now() - started) / 1000 };
  }

  const statements: string[] = [];
  let statementBytes = 0;
  let truncated = false;
  let fix: FixFile | undefined;
  let spool: LineWriter | undefined;
  let sink: Phase1Sink;
  if (options.dryRun) {
    sink = {
      add: async (_plan, statement) => {
        if (statements.length < options.maxStatements && statementBytes + statement.length <= DRY_RUN_BYTES) {
          statements.push(statement);
          statementBytes += statement.length;
        } else truncated = true;
      },
    };
  } else if (options.apply) {
    spool = new LineWriter(spoolPath);
    const s = spool;
    sink = { add: (_plan, _statement, key) => s.write(JSON.stringify(key)) };
  } else {
    fix = await FixFile.open(fixFilePath(options.dir, plan.table), fixFileHeader(plan, `differences at tick ${point.tick} (${point.method}); nothing applied`));
    const f = fix;
    sink = { add: (_plan, statement) => f.write(statement) };
  }

  let lastReport = Date.now();
  try {
    const cmp = comparator(ctx, plan);
    const src = cursorRows(point.provider, mergeQuery(plan, "provider"), 5000, ctx.signal);
    const dst = cursorRows(point.subscriber, mergeQuery(plan, "subscriber"), 5000, ctx.signal);
    for await (const diff of mergeDiff(src, dst, cmp, counts)) {
      await sink.add(plan, fixStatement(plan, diff), diffKey(plan, diff));
      if (Date.now() - lastReport > 2000) {
        lastReport = Date.now();
        ctx.progress({ table: plan.table, phase: "merge", ...countFields(counts) });
      }
    }
    const file = fix ? await fix.commit() : null;
    if (spool) await spool.close();
    const outcome: TableOutcome = {
      ...base,
      ok: true,
      status: counts.inserts + counts.updates + counts.deletes === 0 ? "equal" : "differ",
      message: finished(file ? `; ${file}` : ""),
      ...countFields(counts),
      seconds: (Date.now() - started) / 1000,
    };
    if (file) outcome.file = file;
    if (options.dryRun) {
      outcome.statements = statements;
      if (truncated) outcome.statements_truncated = true;
    }
    return outcome;
  } catch (error) {
    await fix?.discard();
    await spool?.discard();
    throw error;
  }
}

function countFields(c: MergeCounts) {
  return { provider_rows: c.srcRows, subscriber_rows: c.dstRows, inserts: c.inserts, updates: c.updates, deletes: c.deletes };
}

/** Phase 2 for one table: the spooled keys re-read at the write point, the fixes applied in its transaction. */
async function applyFixes(ctx: RepairContext, point: ConsistentPoint, target: Target, spoolPath: string, dir: string) {
  const planned = await planAt(point.provider, point.subscriber, ctx.queue, target);
  if (!planned.ok) throw new CommandError("conflict", `not applied: ${planned.reason}`);
  const plan = planned.plan;
  const cmp = comparator(ctx, plan);
  const counts = emptyCounts();
  const fix = await FixFile.open(fixFilePath(dir, plan.table), fixFileHeader(plan, `applied at tick ${point.tick} (${point.method})`));
  try {
    for await (const keys of readChunks<string[]>(spoolPath, APPLY_CHUNK)) {
      ctx.signal.throwIfAborted();
      const [src, dst] = await Promise.all([
        textRows(point.provider, keyFetchQuery(plan, "provider", keys)),
        textRows(point.subscriber, keyFetchQuery(plan, "subscriber", keys)),
      ]);
      const fixes: Fix[] = [];
      for await (const diff of mergeDiff(fromArray(src), fromArray(dst), cmp, counts)) fixes.push({ diff, statement: fixStatement(plan, diff) });
      if (fixes.length === 0) continue;
      await applyFixStatements(point.subscriber, plan, fixes);
      for (const f of fixes) await fix.write(f.statement);
      ctx.progress({ table: plan.table, phase: "apply", ...countFields(counts) });
    }
    return { counts, file: await fix.commit() };
  } catch (error) {
    await fix.discard();
    throw error;
  }
}

export function repairCommand(ctx: RepairContext): CommandSpec {
  return {
    description: "the differing rows as INSERT/UPDATE/DELETE statements: written to fix.<table>.sql, listed (dry_run) or applied (apply)",
    request: {
      ...COMMON_FIELDS,
      apply: { type: "boolean", description: "apply the fixes on the subscriber (in one transaction, at a consistent point)" },
      dry_run: { type: "boolean", description: "list the statements in the reply; write no file" },
      dir: {
        type: "string",
        maxLength: 4096,
        description: "directory of the fix files on the worker's host: inside its repair_dir (relative to it, or absolute); default repair_dir",
      },
      max_statements: { type: "integer", min: 0, max: 1_000_000, description: "dry_run: most statements listed per table (default 1000)" },
    },
    handler: async (request) => {
      if (request.apply === true && request.dry_run === true) throw new CommandError("bad_request", "apply and dry_run do not go together");
      const options: RepairOptions = {
        ...commonOptions(request),
        apply: request.apply === true,
        dryRun: request.dry_run === true,
        dir: "",
        maxStatements: (request.max_statements as number | undefined) ?? 1000,
      };
      if (!options.dryRun) options.dir = await fixDirectory(ctx.repairDir(), request.dir as string | undefined);
      const owner = newOwner(ctx);
      const spools = new Map<string, { path: string; target: Target }>();
      const stopped = new Map<string, { path: string; target: Target }>();
      let n = 0;
      const spoolFor = (table: string) => join(tmpdir(), `londiste-repair-${owner.replace(/[^A-Za-z0-9]/g, "_")}-${n++}-${table.length}.keys`);
      try {
        const outcomes = await forEachTable(ctx, options, owner, async (point, plan, target) => {
          const path = spoolFor(plan.table);
          if (stoppedTable(target.state) && options.apply) {
            stopped.set(plan.table, { path, target });
            return { name: plan.table, ok: true, status: "pending", message: `state ${target.state}: replay stopped applying it` };
          }
          const outcome = await findDifferences(ctx, point, plan, options, path);
          if (stoppedTable(target.state)) {
            outcome.state = target.state;
            outcome.message += `; ${STOPPED_NOTE}`;
          }
          if (options.apply && outcome.status === "differ") spools.set(plan.table, { path, target });
          else if (options.apply) await rm(path, { force: true });
          return outcome;
        });
        if (spools.size > 0 || stopped.size > 0) await applyAll(ctx, options, owner, outcomes, spools, stopped);
        return outcomes;
      } finally {
        for (const { path } of [...spools.values(), ...stopped.values()]) await rm(path, { force: true }).catch(() => {});
      }
    },
  };
}

/**
 * A table replay stopped applying, at the write point: merged whole, its
 * differences fixed, and handed back to replay (REPAIRED) in the point's
 * subscriber transaction.
 */
async function resumeStopped(ctx: RepairContext, point: ConsistentPoint, target: Target, options: RepairOptions, spoolPath: string) {
  const planned = await planAt(point.provider, point.subscriber, ctx.queue, target);
  if (!planned.ok) throw new CommandError("conflict", `not applied: ${planned.reason}`);
  const current = await loadTableSync(point.subscriber, ctx.queue, target.table);
  if (!current || !stoppedTable(current.stateText)) {
    throw new CommandError("conflict", `not applied: ${target.table} is in state ${current?.stateText ?? "(removed)"} now, no longer error`);
  }
  const found = await findDifferences(ctx, point, planned.plan, { ...options, apply: true, dryRun: false }, spoolPath);
  const fixed = found.status === "differ" ? await applyFixes(ctx, point, target, spoolPath, options.dir) : { counts: emptyCounts(), file: null };
  const step = await writeTransition(point.subscriber, current, { type: "REPAIRED", tick: point.tick }, "repair");
  if (!step.accepted) throw new CommandError("conflict", `not applied: ${step.reason}`);
  return { found, fixed };
}

/** Phase 2 of every table with differences: one write point for all (snapshot) or one per table (lock). */
async function applyAll(
  ctx: RepairContext,
  options: RepairOptions,
  owner: string,
  outcomes: TableOutcome[],
  spools: Map<string, { path: string; target: Target }>,
  stopped: Map<string, { path: string; target: Target }>,
): Promise<void> {
  const record = (table: string, result: Awaited<ReturnType<typeof applyFixes>>, tick: number) => {
    const o = outcomes.find((x) => x.name === table)!;
    const c = result.counts;
    o.status = "repaired";
    o.applied = { tick, inserts: c.inserts, updates: c.updates, deletes: c.deletes };
    o.message += `; applied at tick ${tick}: ${c.inserts} inserts, ${c.updates} updates, ${c.deletes} deletes${result.file ? ` (${result.file})` : ""}`;
    if (result.file) o.file = result.file;
  };
  const recordResumed = (table: string, result: Awaited<ReturnType<typeof resumeStopped>>, tick: number) => {
    const i = outcomes.findIndex((x) => x.name === table);
    const c = result.fixed.counts;
    outcomes[i] = {
      ...result.found,
      ok: true,
      status: "repaired",
      state: "ok",
      applied: { tick, inserts: c.inserts, updates: c.updates, deletes: c.deletes },
      message:
        `${result.found.message}; applied at tick ${tick}: ${c.inserts} inserts, ${c.updates} updates, ${c.deletes} deletes` +
        `${result.fixed.file ? ` (${result.fixed.file})` : ""}; state error -> ok: replay applies it from tick ${tick} (no copy)`,
    };
    if (result.fixed.file) outcomes[i]!.file = result.fixed.file;
  };
  const fail = (table: string, error: unknown) => {
    void rm(fixFilePath(options.dir, table), { force: true }).catch(() => {});
    const i = outcomes.findIndex((x) => x.name === table);
    const failed = failedOutcome(table, error);
    outcomes[i] = { ...outcomes[i]!, ok: false, status: "failed", message: `${outcomes[i]!.message}; not applied: ${failed.message}` };
  };
  ctx.progress({ phase: "apply", tables: [...spools.keys(), ...stopped.keys()] });
  type Work = { table: string; run: (point: ConsistentPoint) => Promise<(tick: number) => void> };
  const work: Work[] = [
    ...[...spools].map(([table, spool]) => ({
      table,
      run: async (point: ConsistentPoint) => {
        const result = await applyFixes(ctx, point, spool.target, spool.path, options.dir);
        return (tick: number) => record(table, result, tick);
      },
    })),
    ...[...stopped].map(([table, spool]) => ({
      table,
      run: async (point: ConsistentPoint) => {
        const result = await resumeStopped(ctx, point, spool.target, options, spool.path);
        return (tick: number) => recordResumed(table, result, tick);
      },
    })),
  ];
  if (options.method === "snapshot") {
    let point: ConsistentPoint;
    try {
      point = await openPoint(ctx, options, owner, true);
    } catch (error) {
      for (const w of work) fail(w.table, error);
      return;
    }
    const done: Array<[string, (tick: number) => void]> = [];
    try {
      for (const w of work) {
        try {
          done.push([w.table, await inSavepoints(point, () => w.run(point))]);
        } catch (error) {
          if (ctx.signal.aborted) throw error;
          fail(w.table, error);
        }
      }
    } catch (error) {
      await point.close(false);
      throw error;
    }
    try {
      await point.close(true);
    } catch (error) {
      for (const [table] of done) fail(table, error);
      return;
    }
    for (const [, report] of done) report(point.tick);
  } else {
    for (const w of work) {
      let point: ConsistentPoint | undefined;
      try {
        point = await openPoint(ctx, options, owner, true, (spools.get(w.table) ?? stopped.get(w.table))!.target.table);
        const tick = point.tick;
        const report = await w.run(point);
        const p = point;
        point = undefined;
        await p.close(true);
        report(tick);
      } catch (error) {
        if (ctx.signal.aborted) throw error;
        fail(w.table, error);
      } finally {
        await point?.close(false);
      }
    }
  }
}
