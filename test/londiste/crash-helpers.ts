/**
 * Helpers for the copy/replay crash tests (crash-matrix*.test.ts,
 * copy-multi*.test.ts): a job whose ticker, replay and copy workers are OS
 * processes, data tables with a change log on both sides, a write load,
 * and ways to hold a table in one state of the sync machine on purpose:
 *
 *  - gates: a BEFORE ROW trigger (ENABLE ALWAYS) on each subscriber data
 *    table waits for a shared advisory lock that the test holds
 *    exclusively: `copy` stops the initial COPY a few hundred rows in (at
 *    the first id ending in 499 or 999, after the snapshot was taken),
 *    `apply` stops the copy's catch-up at the first change it applies
 *    (in-copy and catching-up last while closed);
 *  - replay's position lock (pg_advisory_xact_lock('londiste.replay',
 *    consumer)) held by the test: replay cannot start a round, so (none)
 *    and wanna-sync last, and the copy cannot hand over (catching-up);
 *  - SIGSTOP of a service at a quiet moment (none of its sessions in a
 *    transaction or running a statement), so the frozen process holds no
 *    lock another actor needs.
 *
 * Exactly once: every row change of a data table is logged on the provider
 * with its transaction id, and on the subscriber (ENABLE ALWAYS, so the
 * changes of replay and of the copy's catch-up are logged; the rows of the
 * initial COPY are not, and the copy's TRUNCATE clears the table's log in
 * the copy's transaction). The subscriber's log must then equal, as a
 * multiset of (op, old row, new row), the provider's changes that the last
 * copy's snapshot (its COPY.DONE event in londiste.sync_outbox) does not
 * contain: a change lost or applied twice shows as a difference.
 */
import pg from "pg";
import { expect } from "vitest";
import type { TestDatabase } from "../support/db.ts";
import { expectOk } from "../support/pgqadm.ts";
import type { Queryable } from "../support/pgq-state.ts";
import { SERVICE_START_MS, type ServiceProcess } from "../support/processes.ts";
import { sleep, waitForProgress } from "../support/wait.ts";
import { expectTablesEqual, waitCaughtUp } from "./e2e-check.ts";
import { lockConsumerPosition } from "../../shared/londiste/position.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

export const ACTIVE = "active: this instance replays the job";

// ------------------------------------------------------------------ schema

export const PROVIDER_SUPPORT_SQL = `
create table public.changelog (tbl text not null, op text not null, old_row text, new_row text,
                               tx xid8 not null default pg_current_xact_id());
create function public.log_change() returns trigger language plpgsql as $$
begin
    insert into public.changelog (tbl, op, old_row, new_row) values (TG_TABLE_NAME, TG_OP,
        case when TG_OP <> 'INSERT' then to_jsonb(OLD)::text end,
        case when TG_OP <> 'DELETE' then to_jsonb(NEW)::text end);
    return null;
end $$;`;

export const SUBSCRIBER_SUPPORT_SQL = `
create table public.changelog (tbl text not null, op text not null, old_row text, new_row text);
create function public.log_change() returns trigger language plpgsql as $$
begin
    -- the rows of the initial copy are the snapshot, not changes
    if TG_OP = 'INSERT' and current_query() ~* '^\\s*copy\\s' then return null; end if;
    insert into public.changelog values (TG_TABLE_NAME, TG_OP,
        case when TG_OP <> 'INSERT' then to_jsonb(OLD)::text end,
        case when TG_OP <> 'DELETE' then to_jsonb(NEW)::text end);
    return null;
end $$;
create function public.log_truncate() returns trigger language plpgsql as $$
begin
    delete from public.changelog where tbl = TG_TABLE_NAME;
    return null;
end $$;
create function public.gate() returns trigger language plpgsql as $$
begin
    if current_query() ~* '^\\s*copy\\s' then
        -- a few hundred rows into the COPY
        if NEW.id % 500 <> 499 then return NEW; end if;
        perform pg_advisory_xact_lock_shared(hashtext('gate:copy'), hashtext(TG_TABLE_NAME));
    elsif current_setting('application_name') like 'londiste % copy' then
        perform pg_advisory_xact_lock_shared(hashtext('gate:apply'), hashtext(TG_TABLE_NAME));
    end if;
    return coalesce(NEW, OLD);
end $$;`;

/** The data table of the crash tests: key changes, updates that bump a version, deletes. */
export function dataTableSql(name: string): string {
  return `create table public.${name} (id int primary key, v int not null, grp int not null, payload text);
create index ${name}_grp_idx on public.${name} (grp, v);`;
}

/** Change log (both sides) and the gates (subscriber) of a data table. */
export function providerTriggersSql(name: string): string {
  return `create trigger log_change after insert or update or delete on public.${name} for each row execute function public.log_change();`;
}

export function subscriberTriggersSql(name: string): string {
  return `create trigger log_change after insert or update or delete on public.${name} for each row execute function public.log_change();
create trigger log_truncate after truncate on public.${name} for each statement execute function public.log_truncate();
create trigger gate before insert or update or delete on public.${name} for each row execute function public.gate();
alter table public.${name} enable always trigger log_change;
alter table public.${name} enable always trigger log_truncate;
alter table public.${name} enable always trigger gate;`;
}

/** Creates the data tables on both sides (with triggers) and fills them on the provider (ids 1..rows). */
export async function createDataTables(job: LondisteJob, names: string[], rows: number): Promise<void> {
  await job.provider.query(names.map((n) => `${dataTableSql(n)}\n${providerTriggersSql(n)}`).join("\n"));
  await job.subscriber.query(names.map((n) => `${dataTableSql(n)}\n${subscriberTriggersSql(n)}`).join("\n"));
  for (const n of names) {
    await job.provider.query(
      `insert into public.${n} select g, 1, g % 17, md5(g::text) from generate_series(1, ${rows}) g; analyze public.${n}`,
    );
  }
}

// ------------------------------------------------------------------ the job and its processes

export interface CrashEnv {
  label: string;
  job: LondisteJob;
  ticker: ServiceProcess;
  replay: ServiceProcess;
  copy: ServiceProcess;
  /** Processes started so far, by kind, for labels. */
  started: Record<"ticker" | "replay" | "copy", number>;
  /** Every process of the job, oldest first. */
  all: ServiceProcess[];
}

export type Actor = "replay" | "copy" | "ticker";

export function startCopy(job: LondisteJob, label: string): ServiceProcess {
  return job.start(label, "copy");
}

/**
 * A job with londiste installed on both sides, the change-log support
 * installed, and ticker, replay and one copy worker running.
 */
export async function createCrashEnv(label: string, extraConfig: string[] = []): Promise<CrashEnv> {
  const job = await createLondisteJob({ label, extraConfig: ["copy_lease = 3", ...extraConfig] });
  await job.provider.query(PROVIDER_SUPPORT_SQL);
  await job.subscriber.query(SUBSCRIBER_SUPPORT_SQL);
  const replay = job.startReplay(`${label}-replay-1`);
  await replay.waitForLog(ACTIVE, { timeoutMs: SERVICE_START_MS });
  await installJob(job);
  const copy = startCopy(job, `${label}-copy-1`);
  await copy.waitForLog("copy worker starting", { timeoutMs: SERVICE_START_MS });
  return {
    label,
    job,
    ticker: job.ticker,
    replay,
    copy,
    started: { ticker: 1, replay: 1, copy: 1 },
    all: [job.ticker, replay, copy],
  };
}

export function restart(env: CrashEnv, actor: Actor): ServiceProcess {
  const n = ++env.started[actor];
  const label = `${env.label}-${actor}-${n}`;
  const p = actor === "ticker" ? env.job.startTicker(label) : actor === "replay" ? env.job.startReplay(label) : startCopy(env.job, label);
  env[actor] = p;
  env.all.push(p);
  return p;
}

/** Starts again whatever is not running (also after a SIGSTOP: SIGCONT). */
export function ensureRunning(env: CrashEnv): void {
  for (const actor of ["ticker", "replay", "copy"] as const) {
    if (!env[actor].running) restart(env, actor);
    else env[actor].child.kill("SIGCONT");
  }
}

/**
 * Log lines at warn (40) or above (CRASH_LOG_LEVEL=30 shows info too) of the
 * job's processes, as `label: msg` with a count.
 */
export function problems(env: CrashEnv): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of env.all) {
    for (const l of p.lines) {
      if ((l.level ?? 0) < (process.env.CRASH_LOG_LEVEL ? Number(process.env.CRASH_LOG_LEVEL) : 40)) continue;
      const k = `${p.label.replace(/-\d+$/, "")}: ${l.msg}`;
      out.set(k, (out.get(k) ?? 0) + 1);
    }
  }
  return out;
}

// ------------------------------------------------------------------ table state

export interface StateRow {
  state: string | null;
  version: number;
  leaseOwner: string | null;
}

export async function tableRow(job: LondisteJob, table: string): Promise<StateRow | undefined> {
  const { rows } = await job.subscriber.query<{ merge_state: string | null; sync_version: string; lease_owner: string | null }>(
    "select merge_state, sync_version, lease_owner from londiste.subscriber_table where queue_name = $1 and table_name = $2",
    [job.queue, table],
  );
  const r = rows[0];
  return r ? { state: r.merge_state, version: Number(r.sync_version), leaseOwner: r.lease_owner } : undefined;
}

/**
 * What moves while a table makes its way through the sync machine: its row, its outbox, a
 * COPY running into the subscriber (rows so far), the copy consumers' positions (catch-up)
 * and replay's recorded tick (handover). The waits below go on while any of it moves.
 */
export async function syncProgress(job: LondisteJob, table: string): Promise<unknown> {
  const [row, outbox, copying, consumers, replayTick] = await Promise.all([
    tableRow(job, table),
    job.subscriber.query<{ n: string }>("select count(*) as n from londiste.sync_outbox where queue_name = $1 and table_name = $2", [
      job.queue,
      table,
    ]),
    job.subscriber.query<{ n: string }>(
      "select coalesce(sum(tuples_processed), 0) as n from pg_stat_progress_copy where datname = current_database()",
    ),
    job.provider.query<{ c: string; t: string }>("select consumer_name as c, last_tick as t from pgq.get_consumer_info($1) order by 1", [job.queue]),
    job.subscriber.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [job.jobName]),
  ]);
  return {
    row,
    outbox: outbox.rows[0]!.n,
    copying: copying.rows[0]!.n,
    consumers: consumers.rows.filter((r) => r.c.startsWith(`${job.jobName}_copy_`)).map((r) => `${r.c}@${r.t}`),
    replay: replayTick.rows[0]!.t,
  };
}

/**
 * Waits until the table's state passes `want`, while the sync machine makes progress
 * (syncProgress); fails after 90 s without any, or after `limitMs` of machine time anyway.
 */
export async function waitState(
  job: LondisteJob,
  table: string,
  want: (state: string | null) => boolean,
  what: string,
  limitMs = 600_000,
): Promise<StateRow> {
  let last: StateRow | undefined;
  try {
    await waitForProgress({
      what: `${table} to be ${what}`,
      measure: async () => {
        last = await tableRow(job, table);
        return last && want(last.state) ? "done" : await syncProgress(job, table);
      },
      done: (v) => v === "done",
      limitMs,
      intervalMs: 50,
    });
    return last!;
  } catch (error) {
    throw new Error(`${(error as Error).message} (now ${JSON.stringify(last)}; history ${JSON.stringify(await history(job, table))})`);
  }
}

/** The states a table went through (londiste.sync_outbox, in order). */
export async function history(job: LondisteJob, table: string): Promise<Array<string | null>> {
  const { rows } = await job.subscriber.query<{ to_state: string | null }>(
    "select to_state from londiste.sync_outbox where queue_name = $1 and table_name = $2 order by id",
    [job.queue, table],
  );
  return rows.map((r) => r.to_state);
}

/** Copy consumers (of this job) registered on the provider queue. */
export async function copyConsumers(job: LondisteJob): Promise<string[]> {
  const { rows } = await job.provider.query<{ c: string }>("select consumer_name as c from pgq.get_consumer_info($1) order by 1", [job.queue]);
  return rows.map((r) => r.c).filter((c) => c.startsWith(`${job.jobName}_copy_`));
}

// ------------------------------------------------------------------ holds

async function sessionOn(db: TestDatabase, name: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url, application_name: name });
  c.on("error", () => {});
  await c.connect();
  return c;
}

/** copy and apply: the gate() trigger above; replay: a gate trigger of the multi-host test's own. */
export type GateKind = "copy" | "apply" | "replay";

/** A closed gate: the copy's COPY (or its catch-up apply) of `table` waits at its first row until open(). */
export interface Gate {
  open(): Promise<void>;
}

export async function closeGate(job: LondisteJob, kind: GateKind, table: string): Promise<Gate> {
  const c = await sessionOn(job.subscriber, `test gate ${kind}`);
  await c.query("select pg_advisory_lock(hashtext($1), hashtext($2))", [`gate:${kind}`, table]);
  let opened: Promise<void> | undefined;
  return {
    open: () => (opened ??= c.end().catch(() => {})),
  };
}

/** Sessions of the copy waiting at the gate of `table` (unqualified name). */
export async function waitingAtGate(job: LondisteJob, kind: GateKind, table: string): Promise<number> {
  const { rows } = await job.subscriber.query<{ n: string }>(
    `select count(*) as n from pg_locks l
      where l.locktype = 'advisory' and not l.granted and l.database = (select oid from pg_database where datname = current_database())
        and l.classid = hashtext($1)::oid and l.objid = hashtext($2)::oid and l.objsubid = 2`,
    [`gate:${kind}`, table],
  );
  return Number(rows[0]!.n);
}

/** Waits until the copy waits at the gate, while the sync machine makes progress (see waitState). */
export async function waitAtGate(job: LondisteJob, kind: GateKind, table: string): Promise<void> {
  await waitForProgress({
    what: `the copy to wait at the ${kind} gate of ${table}`,
    measure: async () => ((await waitingAtGate(job, kind, table)) > 0 ? "done" : await syncProgress(job, `public.${table}`)),
    done: (v) => v === "done",
    limitMs: 600_000,
    intervalMs: 50,
  });
}

/** Replay's per-consumer position lock, held by the test until release(). */
export interface Held {
  release(): Promise<void>;
}

export async function holdReplayLock(job: LondisteJob): Promise<Held> {
  const c = await sessionOn(job.subscriber, "test replay lock");
  await c.query("begin");
  await lockConsumerPosition(c, job.jobName);
  let released: Promise<void> | undefined;
  return {
    release: () =>
      (released ??= (async () => {
        await c.query("rollback").catch(() => {});
        await c.end().catch(() => {});
      })()),
  };
}

/** Sessions of a service (by application_name) that are in a transaction or running a statement, on both sides. */
async function busySessions(job: LondisteJob, appName: string): Promise<string[]> {
  const out: string[] = [];
  for (const db of [job.provider, job.subscriber]) {
    const { rows } = await db.query<{ d: string }>(
      `select state || ': ' || left(query, 60) as d from pg_stat_activity
        where datname = current_database() and application_name = $1 and state is distinct from 'idle'`,
      [appName],
    );
    out.push(...rows.map((r) => r.d));
  }
  return out;
}

/**
 * SIGSTOPs a service at a moment when none of its sessions is in a
 * transaction or running a statement (so it holds no lock another actor
 * waits for): stop, let statements in flight finish, look, and continue
 * and try again if it was busy. Returns the number of tries.
 */
export async function freezeQuiet(job: LondisteJob, proc: ServiceProcess, kind: "replay" | "copy", maxTries = 200): Promise<number> {
  const appName = `londiste ${job.jobName} ${kind}`;
  let busy: string[] = [];
  for (let i = 1; i <= maxTries; i++) {
    proc.child.kill("SIGSTOP");
    await sleep(60);
    busy = await busySessions(job, appName);
    if (busy.length === 0) return i;
    proc.child.kill("SIGCONT");
    await sleep(10 + Math.floor(Math.random() * 60));
  }
  throw new Error(`could not freeze ${proc.label} at a quiet moment in ${maxTries} tries (last busy: ${busy.join(" | ")})`);
}

// ------------------------------------------------------------------ write load

export interface WriterStats {
  committed: number;
  rolledBack: number;
  inserts: number;
  updates: number;
  rekeys: number;
  deletes: number;
}

export interface Writer {
  stats: WriterStats;
  /** Stops and resolves to the final counts; rejects if the writer failed. */
  stop(): Promise<WriterStats>;
  /** Resolves once `n` more transactions committed; fails when none commits for 90 s (machine time). */
  waitCommits(n: number): Promise<void>;
}

/**
 * One session changing `public.<table>` on the provider until stopped:
 * transactions of 1–4 statements (inserts, updates bumping v, key changes,
 * deletes), one in ten rolled back. Keys are ids 1..initialRows plus those
 * it inserts (from `idBase`).
 */
export function startWriter(url: string, table: string, initialRows: number, idBase = 1_000_000): Writer {
  const stats: WriterStats = { committed: 0, rolledBack: 0, inserts: 0, updates: 0, rekeys: 0, deletes: 0 };
  let keys = Array.from({ length: initialRows }, (_, i) => i + 1);
  let next = idBase;
  let stopping = false;
  const rnd = (n: number) => Math.floor(Math.random() * n);
  const run = (async () => {
    const client = new pg.Client({ connectionString: url, application_name: `writer ${table}` });
    client.on("error", () => {});
    await client.connect();
    try {
      while (!stopping) {
        const work = [...keys];
        const counts = { inserts: 0, updates: 0, rekeys: 0, deletes: 0 };
        await client.query("begin");
        const ops = 1 + rnd(4);
        for (let i = 0; i < ops; i++) {
          const roll = Math.random();
          if (work.length < 50 || roll < 0.3) {
            const id = ++next;
            await client.query(`insert into public.${table} values ($1, 1, $2, $3)`, [id, rnd(17), `new ${id}`]);
            work.push(id);
            counts.inserts++;
          } else if (roll < 0.7) {
            const id = work[rnd(work.length)]!;
            const r = await client.query(`update public.${table} set v = v + 1, payload = $2 where id = $1`, [id, `u${rnd(1000)}`]);
            if (r.rowCount !== 1) throw new Error(`writer ${table}: update of ${id} hit ${r.rowCount} rows`);
            counts.updates++;
          } else if (roll < 0.85) {
            const at = rnd(work.length);
            const id = ++next;
            const r = await client.query(`update public.${table} set id = $2, v = v + 1 where id = $1`, [work[at], id]);
            if (r.rowCount !== 1) throw new Error(`writer ${table}: key change of ${work[at]} hit ${r.rowCount} rows`);
            work[at] = id;
            counts.rekeys++;
          } else {
            const at = rnd(work.length);
            const r = await client.query(`delete from public.${table} where id = $1`, [work[at]]);
            if (r.rowCount !== 1) throw new Error(`writer ${table}: delete of ${work[at]} hit ${r.rowCount} rows`);
            work.splice(at, 1);
            counts.deletes++;
          }
        }
        if (Math.random() < 0.1) {
          await client.query("rollback");
          stats.rolledBack++;
        } else {
          await client.query("commit");
          keys = work;
          stats.committed++;
          stats.inserts += counts.inserts;
          stats.updates += counts.updates;
          stats.rekeys += counts.rekeys;
          stats.deletes += counts.deletes;
        }
        await sleep(2 + rnd(6));
      }
    } finally {
      await client.end().catch(() => {});
    }
  })();
  let failure: unknown;
  run.catch((error: unknown) => (failure = error));
  return {
    stats,
    stop: async () => {
      stopping = true;
      await run;
      return stats;
    },
    waitCommits: async (n) => {
      const target = stats.committed + n;
      await waitForProgress({
        what: `writer ${table}: ${n} more commits (to ${target})`,
        measure: () => stats.committed,
        done: (c) => {
          if (failure) throw failure as Error;
          return c >= target;
        },
        intervalMs: 20,
      });
    },
  };
}

// ------------------------------------------------------------------ checks

/** The snapshot of the table's last finished initial copy (its COPY.DONE event). */
export async function lastCopySnapshot(job: LondisteJob, table: string): Promise<string> {
  const { rows } = await job.subscriber.query<{ s: string | null }>(
    `select event->>'snapshot' as s from londiste.sync_outbox
      where queue_name = $1 and table_name = $2 and event->>'type' = 'COPY.DONE' order by id desc limit 1`,
    [job.queue, table],
  );
  if (!rows[0]?.s) throw new Error(`${table}: no COPY.DONE in londiste.sync_outbox`);
  return rows[0].s;
}

async function changeCounts(db: Queryable, sql: string, params: unknown[]): Promise<Map<string, number>> {
  const { rows } = await db.query<{ r: string; n: string }>(sql, params);
  return new Map(rows.map((r) => [r.r, Number(r.n)]));
}

/**
 * The subscriber applied every provider change of `public.<name>` that the
 * last copy's snapshot does not contain exactly once, and no other;
 * returns how many changes that is.
 */
export async function expectExactlyOnce(job: LondisteJob, name: string): Promise<number> {
  const snapshot = await lastCopySnapshot(job, `public.${name}`);
  const shape = "format('%s %s -> %s', op, old_row, new_row)";
  const [prov, sub] = await Promise.all([
    changeCounts(
      job.provider,
      `select ${shape} as r, count(*) as n from public.changelog
        where tbl = $1 and not pg_visible_in_snapshot(tx, $2::pg_snapshot) group by 1`,
      [name, snapshot],
    ),
    changeCounts(job.subscriber, `select ${shape} as r, count(*) as n from public.changelog where tbl = $1 group by 1`, [name]),
  ]);
  const diff: string[] = [];
  for (const [r, n] of prov) if (sub.get(r) !== n) diff.push(`provider x${n}, subscriber x${sub.get(r) ?? 0}: ${r}`);
  for (const [r, n] of sub) if (!prov.has(r)) diff.push(`provider x0, subscriber x${n}: ${r}`);
  expect(diff.slice(0, 10), `${name}: ${diff.length} row changes not applied exactly once (snapshot ${snapshot})`).toEqual([]);
  let total = 0;
  for (const n of prov.values()) total += n;
  return total;
}

/**
 * After the writers stopped: replay caught up, the table equal to the
 * provider row by row, every change applied exactly once, no copy consumer
 * left. Returns the number of changes applied after the copy's snapshot.
 */
export async function expectReplicated(job: LondisteJob, names: string[]): Promise<Record<string, number>> {
  await waitCaughtUp(job);
  const applied: Record<string, number> = {};
  for (const name of names) {
    const row = await tableRow(job, `public.${name}`);
    expect(row?.state, name).toBe("ok");
    await expectTablesEqual(job, `public.${name}`, ["id"]);
    applied[name] = await expectExactlyOnce(job, name);
  }
  await waitForProgress({ what: "the copy consumers to be dropped", measure: () => copyConsumers(job), done: (c) => c.length === 0 });
  return applied;
}

/** `londiste CONF subscriber add --force` (the change-log and gate triggers). */
export async function addTables(job: LondisteJob, names: string[], extra: string[] = []): Promise<void> {
  expectOk(await job.londiste("subscriber", "add", "--force", ...extra, ...names.map((n) => `public.${n}`)));
}
