/**
 * Across hosts (docs/multihost.md): one replication job spread over five
 * network-namespace hosts (test/support/hosts.ts, host-cluster.ts) —
 * provider and subscriber PostgreSQL on hosts of their own, a 3-node NATS
 * cluster with JetStream (one node on each of a1, a2, a3, the state-event
 * stream with 3 replicas), replay active on a1 and standing by on a2, a
 * copy worker on each of a1 and a2, ticker, repair worker and a `londiste
 * watch` on a3 — and the faults a real deployment meets, each under a
 * write load on the provider, each ending with the tables equal and every
 * row change applied exactly once (the change logs of crash-helpers.ts):
 *
 *  - the active replay's host cut off (its switch port down): the standby
 *    takes over; the cut-off replay commits nothing after the cut, also
 *    once its host is back;
 *  - the fence: the active replay paused (SIGSTOP) in the middle of a
 *    batch, its lock session ended meanwhile, the standby takes over; the
 *    paused replay, resumed, rolls its batch back;
 *  - a copy worker's host cut off in the middle of a COPY: its lease
 *    expires, the worker on another host copies the table to ok, the
 *    cut-off one never writes it again;
 *  - the replay host's NATS node frozen (SIGSTOP): replication goes on
 *    without NATS; afterwards the state events reach the watcher in order,
 *    each once;
 *  - the NATS node leading the state-event stream killed: the events go on
 *    through the other nodes, the watcher sees each once, in order;
 *  - a split between the two replay hosts (bridge ports isolated), both
 *    still reaching the databases: one replay applies at a time.
 *
 * Who wrote what on the subscriber is recorded by a statement trigger
 * with inet_client_addr() (public.writes): that is how "the old one wrote
 * nothing after" is checked, by host. The figures (time to detect and to
 * recover, rows and events checked) are printed, and written to
 * MULTIHOST_RESULTS (e.g. docs/multihost-results.md) when that is set.
 */
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk } from "../support/pgqadm.ts";
import { killProcesses, SERVICE_START_MS, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { createMultiHostJob, type MultiHostJob } from "../support/multihost-job.ts";
import { waitForProgress } from "../support/wait.ts";
import {
  ACTIVE,
  createDataTables,
  expectReplicated,
  PROVIDER_SUPPORT_SQL,
  startWriter,
  SUBSCRIBER_SUPPORT_SQL,
  waitState,
  type Writer,
} from "../londiste/crash-helpers.ts";
import { installJob } from "../londiste/job.ts";
import { waitCaughtUp } from "../londiste/e2e-check.ts";

useProcessCleanup();

const STANDBY = "standing by: another replay of this job is active";
const LOST_FENCE = "lost the active-replay lock";
const ROWS = 2000;
const LEASE_S = 3;

/** Who wrote what on the subscriber (statement level, with the client's address), and the replay gate. */
const SUBSCRIBER_AUDIT_SQL = `
create table public.writes (at timestamptz not null default clock_timestamp(), addr inet, app text, tbl text, op text, pid int);
create function public.log_write() returns trigger language plpgsql as $$
begin
    insert into public.writes (addr, app, tbl, op, pid)
    values (inet_client_addr(), current_setting('application_name'), TG_TABLE_NAME, TG_OP, pg_backend_pid());
    return null;
end $$;
create function public.replay_gate() returns trigger language plpgsql as $$
begin
    if current_setting('application_name') like 'londiste % replay' then
        perform pg_advisory_xact_lock_shared(hashtext('gate:replay'), hashtext(TG_TABLE_NAME));
    end if;
    return coalesce(NEW, OLD);
end $$;`;

function auditTriggersSql(name: string): string {
  return `create trigger log_write after insert or update or delete or truncate on public.${name} for each statement execute function public.log_write();
create trigger replay_gate before insert or update or delete on public.${name} for each row execute function public.replay_gate();
alter table public.${name} enable always trigger log_write;
alter table public.${name} enable always trigger replay_gate;`;
}

// ------------------------------------------------------------------ figures

interface Figure {
  scenario: string;
  fault: string;
  detectMs?: number;
  detectWhat?: string;
  recoverMs?: number;
  recoverWhat?: string;
  commits?: number;
  changesChecked?: number;
  rowsCompared?: number;
  eventsChecked?: number;
  lost: number;
  doubled: number;
  notes: string[];
}

const figures: Figure[] = [];

function writeResults(): void {
  const head = "| scenario | fault | detected | recovered | writer commits | changes checked exactly once | rows compared | state events checked | lost | doubled |";
  const rows = figures.map(
    (f) =>
      `| ${f.scenario} | ${f.fault} | ${f.detectMs !== undefined ? `${(f.detectMs / 1000).toFixed(1)} s (${f.detectWhat})` : "–"} | ` +
      `${f.recoverMs !== undefined ? `${(f.recoverMs / 1000).toFixed(1)} s (${f.recoverWhat})` : "–"} | ${f.commits ?? "–"} | ` +
      `${f.changesChecked ?? "–"} | ${f.rowsCompared ?? "–"} | ${f.eventsChecked ?? "–"} | ${f.lost} | ${f.doubled} |`,
  );
  const notes = figures.flatMap((f) => f.notes.map((n) => `- ${f.scenario}: ${n}`));
  const text = [
    "# Multi-host fault figures",
    "",
    `Written by \`MULTIHOST_RESULTS=docs/multihost-results.md npx vitest run test/multihost\` on ${new Date().toISOString()}`,
    `(${process.env.CI ? "CI" : "a developer machine"}, copy_lease = ${LEASE_S} s, server keepalive 1 s × 2 probes; see docs/multihost.md).`,
    "Times are from the fault to the first sign the system acted (detected) and to the state named (recovered).",
    "",
    head,
    "|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    ...(notes.length > 0 ? ["Notes:", "", ...notes, ""] : []),
  ].join("\n");
  console.info(text);
  const out = process.env.MULTIHOST_RESULTS;
  if (out) writeFileSync(out, text);
}

// ------------------------------------------------------------------ the job

let env: MultiHostJob;
/** The replay processes, by host. */
const replays = new Map<string, ServiceProcess>();
const copies = new Map<string, ServiceProcess>();
export let watcher: ServiceProcess;
let started = 0;

function startReplayOn(host: string): ServiceProcess {
  const p = env.startOn(host, `replay-${host}-${++started}`, "replay");
  replays.set(host, p);
  return p;
}

function startCopyOn(host: string): ServiceProcess {
  const p = env.startOn(host, `copy-${host}-${++started}`, "copy");
  copies.set(host, p);
  return p;
}

/** The replay that logged `active` last, with its host. */
function activeReplay(): { host: string; proc: ServiceProcess } {
  let best: { host: string; proc: ServiceProcess; at: number } | undefined;
  for (const [host, proc] of replays) {
    if (!proc.running) continue;
    const lines = proc.lines.filter((l) => l.msg === ACTIVE || l.msg === STANDBY || (typeof l.msg === "string" && l.msg.startsWith(LOST_FENCE)));
    const last = lines.at(-1);
    if (last?.msg === ACTIVE && (!best || Number(last.time) > best.at)) best = { host, proc, at: Number(last.time) };
  }
  if (!best) throw new Error("no replay is active");
  return best;
}

/** Epoch ms of the first log line matching `text` at index `from` or later, waiting for it. */
async function logTime(p: ServiceProcess, text: string | RegExp, from: number, timeoutMs = 120_000): Promise<number> {
  const line = await p.waitForLog(text, { from, timeoutMs });
  return Number(line.time);
}

/** The last error a process logged (or its last output line), for notes. */
function lastError(p: ServiceProcess): string {
  const l = p.lines.filter((x) => (x.level ?? 0) >= 50).at(-1);
  const err = l?.err as { message?: string } | undefined;
  if (l) return `${l.msg}${err?.message ? `: ${err.message}` : ""}`;
  // An uncaught exception: its first line on stderr.
  const lines = p.output.split("\n").map((x) => x.trim());
  const found = [lines.find((x) => /^\w*Error: /.test(x)), lines.find((x) => x.startsWith("Emitted 'error' event"))].filter(Boolean);
  return found.length > 0 ? found.join("; ") : p.tail(1);
}

/** Committed subscriber writes from a host's address since `sinceMs` (epoch ms), by application. */
async function writesFrom(host: string, sinceMs: number, tbl?: string): Promise<Array<{ app: string; op: string; at: string }>> {
  const { rows } = await env.subscriber.query<{ app: string; op: string; at: string }>(
    `select app, op, at::text from public.writes where addr = $1::inet and at > to_timestamp($2 / 1000.0) and ($3::text is null or tbl = $3) order by at`,
    [env.net.host(host).addr, sinceMs, tbl ?? null],
  );
  return rows;
}

/** Adds the tables (provider and subscriber) from a3. */
async function addTables(names: string[]): Promise<void> {
  expectOk(await env.londisteOn("a3", "provider", "add", ...names.map((n) => `public.${n}`)));
  expectOk(await env.londisteOn("a3", "subscriber", "add", "--force", ...names.map((n) => `public.${n}`)));
}

/** Ends with the writer stopped, replay caught up, the tables equal and exactly once; fills the figure. */
async function finish(f: Figure, writer: Writer, names: string[]): Promise<void> {
  const stats = await writer.stop();
  const applied = await expectReplicated(env, names);
  f.commits = stats.committed;
  f.changesChecked = Object.values(applied).reduce((a, b) => a + b, 0);
  let rows = 0;
  for (const n of names) rows += Number((await env.provider.query<{ n: string }>(`select count(*) as n from public.${n}`)).rows[0]!.n);
  f.rowsCompared = rows;
}

const TABLES = ["t_cut_replay", "t_fence", "t_cut_copy", "t_nats_cut", "t_leader", "t_split"];

beforeAll(async () => {
  env = await createMultiHostJob("mh", [`copy_lease = ${LEASE_S}`, "parallel_copies = 1"]);
  await env.provider.query(PROVIDER_SUPPORT_SQL);
  await env.subscriber.query(SUBSCRIBER_SUPPORT_SQL + SUBSCRIBER_AUDIT_SQL);
  const a = startReplayOn("a1");
  await a.waitForLog(ACTIVE, { timeoutMs: SERVICE_START_MS });
  await installJob(env);
  const b = startReplayOn("a2");
  await b.waitForLog(STANDBY, { timeoutMs: SERVICE_START_MS });
  startCopyOn("a1");
  startCopyOn("a2");
  env.startOn("a3", "repair-a3", "repair-worker");
  await createDataTables(env, TABLES, ROWS);
  await env.subscriber.query(TABLES.map(auditTriggersSql).join("\n"));
  for (const p of [...copies.values()]) await p.waitForLog("copy worker starting", { timeoutMs: SERVICE_START_MS });
  watcher = env.startOn("a3", "watch-a3", "watch", ["--json", "--all"]);
}, 300_000);

afterAll(async () => {
  writeResults();
  await killProcesses();
  await env?.destroy();
}, 180_000);

describe("a replication job across network-namespace hosts", () => {
  it("the active replay's host is cut off: the standby takes over, the old replay commits nothing after the cut", async () => {
    const f: Figure = { scenario: "replay host cut off", fault: "switch port of the active replay's host down", lost: 0, doubled: 0, notes: [] };
    figures.push(f);
    const name = "t_cut_replay";
    const writer = startWriter(env.provider.url, name, ROWS);
    try {
      await addTables([name]);
      await waitState(env, `public.${name}`, (s) => s === "ok", "ok");
      await writer.waitCommits(30);
      const { host: oldHost, proc: oldReplay } = activeReplay();
      const standbyHost = oldHost === "a1" ? "a2" : "a1";
      const standby = replays.get(standbyHost)!;
      const from = standby.lines.length;
      const cutAt = Date.now();
      await env.net.cut(oldHost);
      const activeAt = await logTime(standby, ACTIVE, from);
      f.detectMs = activeAt - cutAt;
      f.detectWhat = `standby on ${standbyHost} active`;
      // Recovered: the standby applied changes the writer made after the cut.
      await writer.waitCommits(20);
      const tick = await waitCaughtUp(env);
      f.recoverMs = Date.now() - cutAt;
      f.recoverWhat = `standby applied up to tick ${tick}`;
      await env.net.heal(oldHost);
      // The old replay learns it lost the lock when it talks to the subscriber again.
      await waitForProgress({
        what: `the old replay on ${oldHost} to stand by or fail its round after the heal`,
        measure: () => oldReplay.lines.length,
        done: () =>
          !oldReplay.running ||
          oldReplay.lines.slice(from === 0 ? 0 : 0).some((l) => Number(l.time) > cutAt && (l.msg === STANDBY || String(l.msg).startsWith(LOST_FENCE) || (l.level ?? 0) >= 50)),
      });
      if (!oldReplay.running) {
        f.notes.push(`the cut-off replay exited after the heal (${JSON.stringify(oldReplay.exitInfo)}): ${lastError(oldReplay)}`);
      }
      await writer.waitCommits(20);
      await finish(f, writer, [name]);
      expect(await writesFrom(oldHost, cutAt), `writes committed by ${oldHost} after the cut`).toEqual([]);
      expect((await writesFrom(standbyHost, activeAt, name)).length, "the standby applied changes").toBeGreaterThan(0);
    } finally {
      await writer.stop().catch(() => {});
    }
  });
});
