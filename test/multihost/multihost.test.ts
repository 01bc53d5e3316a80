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
  closeGate,
  createDataTables,
  expectReplicated,
  freezeQuiet,
  PROVIDER_SUPPORT_SQL,
  startWriter,
  SUBSCRIBER_SUPPORT_SQL,
  tableRow,
  waitAtGate,
  waitState,
  type Writer,
} from "../londiste/crash-helpers.ts";
import { installJob } from "../londiste/job.ts";
import { subscriberTick, waitCaughtUp } from "../londiste/e2e-check.ts";
import { stateStreamName } from "../../shared/londiste/state-events.ts";
import { NATS_HOSTS } from "../support/host-cluster.ts";
import { jobLockKey, REPLAY_LOCK_CLASS } from "../../services/replay/main.ts";

useProcessCleanup();

const STANDBY = "standing by: another replay of this job is active";
const LOST_FENCE = "lost the active-replay lock";
const ROWS = 2000;
/** Bound of one scenario: only stops a hang (its waits go by progress, and a loaded 2-core machine is slow). */
const SCENARIO_TIMEOUT_MS = 420_000;
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

/** Why a process exited: its uncaught exception on stderr, else the last error it logged. */
function lastError(p: ServiceProcess): string {
  const l = p.lines.filter((x) => (x.level ?? 0) >= 50).at(-1);
  const err = l?.err as { message?: string } | undefined;
  const logged = l ? `${l.msg}${err?.message ? `: ${err.message}` : ""}` : p.tail(1);
  const lines = p.output.split("\n").map((x) => x.trim());
  const found = [lines.find((x) => /^\w*Error: /.test(x)), lines.find((x) => x.startsWith("Emitted 'error' event"))].filter(Boolean);
  return found.length > 0 ? `uncaught: ${found.join("; ")}` : logged;
}

/** Committed subscriber writes from a host's address since `sinceMs` (epoch ms), by application. */
async function writesFrom(host: string, sinceMs: number, tbl?: string): Promise<Array<{ app: string; op: string; at: string }>> {
  const { rows } = await env.subscriber.query<{ app: string; op: string; at: string }>(
    `select app, op, at::text from public.writes where addr = $1::inet and at > to_timestamp($2 / 1000.0) and ($3::text is null or tbl = $3) order by at`,
    [env.net.host(host).addr, sinceMs, tbl ?? null],
  );
  return rows;
}

/**
 * A replay runs on each of a1 and a2 (one that exited is started again, as
 * a supervisor would, and noted), one active and the other standing by.
 */
async function ensureReplays(f: Figure): Promise<void> {
  for (const host of ["a1", "a2"]) {
    const p = replays.get(host)!;
    if (!p.running) {
      // A replay a scenario killed on purpose is no news; one that exited by itself is.
      if (p.exitInfo?.signal !== "SIGKILL") f.notes.push(`the replay on ${host} had exited before this scenario (${lastError(p)}); started again`);
      startReplayOn(host);
    }
  }
  for (const p of replays.values()) await p.waitForLog(new RegExp(`^(${ACTIVE}|${STANDBY})$`), { timeoutMs: SERVICE_START_MS });
  await waitForProgress({ what: "one active replay", measure: () => activeReplay().host, done: () => true });
}

/** A copy worker runs on the host (started again when it exited). */
async function ensureCopy(host: string, f: Figure): Promise<ServiceProcess> {
  let p = copies.get(host)!;
  if (!p.running) {
    if (p.exitInfo?.signal !== "SIGKILL") f.notes.push(`the copy worker on ${host} had exited (${lastError(p)}); started again`);
    p = startCopyOn(host);
  }
  await p.waitForLog("copy worker starting", { timeoutMs: SERVICE_START_MS });
  return p;
}

/** Waits until the process exits or logs a line (after `sinceMs`) that passes `what`. */
async function waitReaction(p: ServiceProcess, sinceMs: number, what: (msg: string, level: number) => boolean, label: string): Promise<void> {
  await waitForProgress({
    what: label,
    measure: () => p.lines.length,
    done: () => !p.running || p.lines.some((l) => Number(l.time) > sinceMs && what(String(l.msg), l.level ?? 0)),
  });
}

/** The state changes the watcher printed (`londiste watch --json --all`), in arrival order. */
function watched(): Array<{ id: number; table: string; to: string | null }> {
  return watcher.lines
    .map((l) => l as unknown as { id?: unknown; job?: unknown; table: string; to: string | null })
    .filter((m) => typeof m.id === "number" && m.job === env.jobName) as Array<{ id: number; table: string; to: string | null }>;
}

/** Ids of the job's committed state changes (londiste.sync_outbox), in order. */
async function outboxIds(): Promise<number[]> {
  const { rows } = await env.subscriber.query<{ id: string }>("select id from londiste.sync_outbox where queue_name = $1 order by id", [env.queue]);
  return rows.map((r) => Number(r.id));
}

/**
 * Waits until the watcher printed every committed state change, then checks
 * it printed each exactly once and in commit order (no gap, nothing twice).
 * Returns how many it checked.
 */
async function expectWatcherComplete(): Promise<number> {
  const want = await outboxIds();
  await waitForProgress({
    what: "the watcher to print every state change",
    measure: () => watched().length,
    done: () => {
      const seen = new Set(watched().map((m) => m.id));
      return want.every((id) => seen.has(id));
    },
  });
  expect(watched().map((m) => m.id)).toEqual(await outboxIds());
  return want.length;
}

interface StreamDetail {
  name: string;
  cluster?: { leader?: string; replicas?: Array<{ name: string; current: boolean }> };
}

/** The state stream's leader (n1..n3) as a NATS node on `host` sees it; undefined while there is none. */
async function streamLeader(host: string): Promise<string | undefined> {
  const jsz = await env.natsMonitor<{ account_details?: Array<{ stream_detail?: StreamDetail[] }> }>(host, "/jsz?accounts=true&streams=true");
  const name = stateStreamName(env.subjectPrefix, env.jobName);
  const stream = (jsz.account_details ?? []).flatMap((a) => a.stream_detail ?? []).find((d) => d.name === name);
  return stream?.cluster?.leader || undefined;
}

/** Adds the tables (provider and subscriber) with the command line on `host` (default a3; its NATS node must run). */
async function addTables(names: string[], host = "a3"): Promise<void> {
  expectOk(await adminCommand(host, "provider", "add", ...names.map((n) => `public.${n}`)));
  expectOk(await adminCommand(host, "subscriber", "add", "--force", ...names.map((n) => `public.${n}`)));
}

/**
 * An admin command as an operator runs it after a fault: a pooled connection of the service that the
 * previous scenario cut is found dead only when used, and the command says "unavailable" (nothing
 * done; the pool drops that connection). The operator runs it again, and so does this, a few times.
 */
async function adminCommand(host: string, ...args: string[]): Promise<Awaited<ReturnType<typeof env.londisteOn>>> {
  for (let attempt = 1; ; attempt++) {
    const r = await env.londisteOn(host, ...args);
    if (r.code === 0 || attempt === 3 || !r.stderr.includes("(unavailable)")) return r;
  }
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

const TABLES = ["t_cut_replay", "t_fence", "t_cut_copy", "t_nats_cut", "t_leader", "t_split", "t_pg_restart"];

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
    await ensureReplays(f);
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
      await waitReaction(
        oldReplay,
        cutAt,
        (msg, level) => msg === STANDBY || msg.startsWith(LOST_FENCE) || level >= 50,
        `the old replay on ${oldHost} to stand by or fail its round after the heal`,
      );
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
  }, SCENARIO_TIMEOUT_MS);

  it("the fence: the active replay paused in the middle of a batch loses its lock; resumed after the takeover, it rolls the batch back", async () => {
    const f: Figure = {
      scenario: "replay paused mid-batch (fence)",
      fault: "SIGSTOP of the active replay inside a batch, its lock session ended by the server",
      lost: 0,
      doubled: 0,
      notes: [],
    };
    figures.push(f);
    await ensureReplays(f);
    const name = "t_fence";
    const writer = startWriter(env.provider.url, name, ROWS);
    try {
      await addTables([name]);
      await waitState(env, `public.${name}`, (s) => s === "ok", "ok");
      await writer.waitCommits(30);
      const { host: oldHost, proc: old } = activeReplay();
      const standbyHost = oldHost === "a1" ? "a2" : "a1";
      const standby = replays.get(standbyHost)!;
      // The next batch with changes of the table stops at its first row, inside replay's transaction.
      const gate = await closeGate(env, "replay", name);
      try {
        await waitAtGate(env, "replay", name);
        const { rows: waiting } = await env.subscriber.query<{ addr: string }>(
          `select host(a.client_addr) as addr from pg_locks l join pg_stat_activity a on a.pid = l.pid
            where l.locktype = 'advisory' and not l.granted and l.classid = hashtext('gate:replay')::oid and l.objid = hashtext($1)::oid`,
          [name],
        );
        expect(waiting.map((w) => w.addr)).toEqual([env.net.host(oldHost).addr]);
        old.child.kill("SIGSTOP");
        const pausedAt = Date.now();
        // A paused VM answers no keepalive, so the server ends its sessions; a stopped process's kernel
        // still answers, so the test does the server's part for the lock session (not for the batch's).
        const { rows: ended } = await env.subscriber.query<{ ok: boolean }>(
          `select pg_terminate_backend(pid) as ok from pg_locks
            where locktype = 'advisory' and granted and classid = $1::int4::oid and objid = $2::int4::oid and objsubid = 2`,
          [REPLAY_LOCK_CLASS, jobLockKey(env.jobName)],
        );
        expect(ended).toEqual([{ ok: true }]);
        const from = standby.lines.length;
        const activeAt = await logTime(standby, ACTIVE, from);
        f.detectMs = activeAt - pausedAt;
        f.detectWhat = `standby on ${standbyHost} active`;
        // The standby's round waits for the position lock the paused batch holds. Resume the old
        // replay in the middle of its batch, after the takeover, and let its batch go on.
        const oldFrom = old.lines.length;
        old.child.kill("SIGCONT");
        await gate.open();
        await logTime(old, LOST_FENCE, oldFrom);
        await writer.waitCommits(20);
        const tick = await waitCaughtUp(env);
        f.recoverMs = Date.now() - pausedAt;
        f.recoverWhat = `new active replay applied up to tick ${tick}`;
        await finish(f, writer, [name]);
        expect(await writesFrom(oldHost, pausedAt), `writes committed by the paused replay's host ${oldHost} after the pause`).toEqual([]);
        expect((await writesFrom(standbyHost, activeAt, name)).length, "the new active replay applied changes").toBeGreaterThan(0);
        expect(old.running, "the fenced replay keeps running").toBe(true);
        await old.waitForLog(STANDBY, { from: oldFrom, timeoutMs: 30_000 });
      } finally {
        await gate.open();
      }
    } finally {
      await writer.stop().catch(() => {});
    }
  }, SCENARIO_TIMEOUT_MS);

  it("a copy worker's host is cut off in the middle of a COPY: the lease expires, a worker on another host copies the table to ok, the old one never writes it again", async () => {
    const f: Figure = { scenario: "copy worker host cut off", fault: "switch port of the copying worker's host down, mid-COPY", lost: 0, doubled: 0, notes: [] };
    figures.push(f);
    await ensureReplays(f);
    const name = "t_cut_copy";
    const table = `public.${name}`;
    // The copy runs on the host where replay stands by: cutting the active replay as well would be two faults.
    const copyHost = activeReplay().host === "a1" ? "a2" : "a1";
    const otherHost = copyHost === "a1" ? "a2" : "a1";
    await copies.get(otherHost)!.kill("SIGKILL");
    const copier = await ensureCopy(copyHost, f);
    const writer = startWriter(env.provider.url, name, ROWS);
    const gate = await closeGate(env, "copy", name);
    try {
      await writer.waitCommits(20);
      await addTables([name]);
      await waitAtGate(env, "copy", name);
      expect((await tableRow(env, table))?.leaseOwner?.split(":")[1]).toBe(String(copier.pid));
      const other = startCopyOn(otherHost);
      await other.waitForLog("copy worker starting", { timeoutMs: SERVICE_START_MS });
      const cutAt = Date.now();
      await env.net.cut(copyHost);
      const owner = await waitForProgress({
        what: `the worker on ${otherHost} to take ${table}`,
        measure: async () => (await tableRow(env, table))?.leaseOwner ?? null,
        done: (o) => o?.split(":")[1] === String(other.pid),
        intervalMs: 50,
      });
      f.detectMs = Date.now() - cutAt;
      f.detectWhat = `lease (${LEASE_S} s) taken by the worker on ${otherHost}`;
      expect(owner).not.toBeNull();
      await gate.open();
      await waitState(env, table, (s) => s === "ok", "ok");
      f.recoverMs = Date.now() - cutAt;
      f.recoverWhat = "table ok";
      const healAt = Date.now();
      await env.net.heal(copyHost);
      await waitReaction(
        copier,
        healAt,
        (msg, level) => /abandoned|another copy worker|failed/.test(msg) || level >= 50,
        `the cut-off copy worker on ${copyHost} to notice it lost the table`,
      );
      if (!copier.running) f.notes.push(`the cut-off copy worker exited after the heal (${JSON.stringify(copier.exitInfo)}): ${lastError(copier)}`);
      await writer.waitCommits(20);
      await finish(f, writer, [name]);
      expect(await writesFrom(copyHost, cutAt, name), `writes to ${name} committed from ${copyHost} after the cut`).toEqual([]);
    } finally {
      await gate.open();
      await writer.stop().catch(() => {});
    }
  }, SCENARIO_TIMEOUT_MS);

  it("the replay host's NATS node freezes: replication goes on without NATS; afterwards every state event reaches the watcher once, in order", async () => {
    const f: Figure = { scenario: "replay host cut off from NATS", fault: "SIGSTOP of the NATS node on the active replay's host", lost: 0, doubled: 0, notes: [] };
    figures.push(f);
    await ensureReplays(f);
    const name = "t_nats_cut";
    const table = `public.${name}`;
    const { host } = activeReplay();
    const node = env.nats.get(host)!;
    const writer = startWriter(env.provider.url, name, ROWS);
    const gate = await closeGate(env, "copy", name);
    try {
      await writer.waitCommits(20);
      await addTables([name]);
      await waitAtGate(env, "copy", name);
      const before = await outboxIds();
      node.child.kill("SIGSTOP");
      const frozenAt = Date.now();
      const tickAtFreeze = await subscriberTick(env);
      // Without NATS: the copy finishes, the handover happens, replay applies (fifty more ticks at least).
      await gate.open();
      await waitState(env, table, (s) => s === "ok", "ok while NATS is frozen");
      await writer.waitCommits(20);
      await waitForProgress({
        what: "replay to apply fifty ticks without NATS",
        measure: () => subscriberTick(env),
        done: (t) => t !== null && tickAtFreeze !== null && t >= tickAtFreeze + 50,
      });
      const tick = await waitCaughtUp(env);
      const during = (await outboxIds()).filter((id) => !before.includes(id));
      expect(during.length).toBeGreaterThan(0);
      // Any replay relays the outbox (one at a time): the standby, whose NATS node runs, may relay
      // while the active one cannot. Either way the watcher must end with all of them, in order.
      const seen = new Set(watched().map((m) => m.id));
      f.notes.push(
        `replication went on while the node was frozen (${((Date.now() - frozenAt) / 1000).toFixed(1)} s): ` +
          `ticks ${tickAtFreeze} → ${tick} applied, the copy finished and handed over; of its ${during.length} state changes ` +
          `${during.filter((id) => seen.has(id)).length} had reached the watcher (relayed by the standby replay) before the node was back`,
      );
      const thawAt = Date.now();
      node.child.kill("SIGCONT");
      f.eventsChecked = await expectWatcherComplete();
      f.recoverMs = Date.now() - thawAt;
      f.recoverWhat = "watcher has every event, after the node is back";
      await finish(f, writer, [name]);
    } finally {
      node.child.kill("SIGCONT");
      await gate.open();
      await writer.stop().catch(() => {});
    }
  }, SCENARIO_TIMEOUT_MS);

  it("the NATS node leading the state-event stream is killed: events go on through the other nodes; the watcher gets each once, in order", async () => {
    const f: Figure = { scenario: "stream leader killed", fault: "SIGKILL of the NATS node leading the state-event stream (R3)", lost: 0, doubled: 0, notes: [] };
    figures.push(f);
    await ensureReplays(f);
    const name = "t_leader";
    const table = `public.${name}`;
    const leader = await waitForProgress({ what: "the state stream's leader", measure: () => streamLeader("a3"), done: (l) => l !== undefined });
    const leaderHost = NATS_HOSTS[Number(leader!.slice(1)) - 1]!;
    const survivor = NATS_HOSTS.find((h) => h !== leaderHost)!;
    const writer = startWriter(env.provider.url, name, ROWS);
    try {
      await writer.waitCommits(20);
      const killedAt = Date.now();
      await env.nats.get(leaderHost)!.kill("SIGKILL");
      const newLeader = await waitForProgress({
        what: "a new leader of the state stream",
        measure: () => streamLeader(survivor).catch(() => undefined),
        done: (l) => l !== undefined && l !== leader,
        intervalMs: 200,
      });
      f.detectMs = Date.now() - killedAt;
      f.detectWhat = `${newLeader} leads the stream (was ${leader} on ${leaderHost})`;
      // State changes while the node is away: a table added, copied and handed over.
      await addTables([name], survivor);
      await waitState(env, table, (s) => s === "ok", "ok");
      f.eventsChecked = await expectWatcherComplete();
      f.recoverMs = Date.now() - killedAt;
      f.recoverWhat = "table ok, watcher has every event";
      await finish(f, writer, [name]);
    } finally {
      await writer.stop().catch(() => {});
      if (!env.nats.get(leaderHost)!.running) await env.startNats(leaderHost);
    }
  }, SCENARIO_TIMEOUT_MS);

  it("a split: the two replay hosts lose each other but both reach the databases; one replay applies at a time", async () => {
    const f: Figure = { scenario: "split between the replay hosts", fault: "bridge ports of a1 and a2 isolated from each other", lost: 0, doubled: 0, notes: [] };
    figures.push(f);
    await ensureReplays(f);
    const name = "t_split";
    const writer = startWriter(env.provider.url, name, ROWS);
    try {
      await addTables([name]);
      await waitState(env, `public.${name}`, (s) => s === "ok", "ok");
      await writer.waitCommits(20);
      const splitAt = Date.now();
      await env.net.isolate(["a1", "a2"]);
      try {
        // Several rounds of replay during the split, and a kill of the active replay in it.
        await writer.waitCommits(30);
        await waitCaughtUp(env);
        const { host: first, proc } = activeReplay();
        const second = first === "a1" ? "a2" : "a1";
        const from = replays.get(second)!.lines.length;
        const killedAt = Date.now();
        await proc.kill("SIGKILL");
        await logTime(replays.get(second)!, ACTIVE, from);
        f.detectMs = Date.now() - killedAt;
        f.detectWhat = `standby on ${second} active after the active replay on ${first} was killed during the split`;
        await writer.waitCommits(30);
        await waitCaughtUp(env);
        f.recoverMs = Date.now() - killedAt;
        f.recoverWhat = "caught up";
        // One replay at a time: while the first was active only it wrote, after the kill only the second.
        const replayWrites = (await env.subscriber.query<{ host: string; at: number }>(
          `select host(addr) as host, extract(epoch from at) * 1000 as at from public.writes
            where app like 'londiste % replay' and tbl = $1 and at > to_timestamp($2 / 1000.0) order by at`,
          [name, splitAt],
        )).rows;
        const firstAddr = env.net.host(first).addr;
        expect(replayWrites.filter((w) => Number(w.at) > killedAt && w.host === firstAddr)).toEqual([]);
        expect(replayWrites.filter((w) => Number(w.at) < killedAt && w.host !== firstAddr)).toEqual([]);
        f.notes.push(`${replayWrites.length} replay statements on ${name} during the split, by host in time order: never two hosts at once`);
      } finally {
        await env.net.isolate(["a1", "a2"], false);
      }
      await finish(f, writer, [name]);
    } finally {
      await writer.stop().catch(() => {});
    }
  }, SCENARIO_TIMEOUT_MS);

  it("the subscriber's PostgreSQL restarts during the handover (wanna-sync): the table still reaches ok", async () => {
    const f: Figure = { scenario: "subscriber restart in handover", fault: "pg_ctl restart -m fast of the subscriber while the table is in wanna-sync", lost: 0, doubled: 0, notes: [] };
    figures.push(f);
    await ensureReplays(f);
    for (const h of ["a1", "a2"]) await ensureCopy(h, f);
    const name = "t_pg_restart";
    const table = `public.${name}`;
    const writer = startWriter(env.provider.url, name, ROWS);
    const gate = await closeGate(env, "copy", name);
    const { proc: active } = activeReplay();
    try {
      await writer.waitCommits(20);
      await addTables([name]);
      await waitAtGate(env, "copy", name);
      // Replay held (stopped at a quiet moment): the copy catches up and offers the handover, which waits.
      await freezeQuiet(env, active, "replay");
      await gate.open();
      await waitState(env, table, (s) => s?.startsWith("wanna-sync:") === true, "wanna-sync");
      const restartAt = Date.now();
      await env.subscriberPg.restart();
      active.child.kill("SIGCONT");
      // A service that exits is started again, as its supervisor would (and noted): the table must still get to ok.
      const supervise = setInterval(() => {
        for (const [host, p] of [...replays]) {
          if (!p.running && replays.get(host) === p) {
            f.notes.push(`replay on ${host} exited after the restart (${lastError(p)}); started again`);
            startReplayOn(host);
          }
        }
        for (const [host, p] of [...copies]) {
          if (!p.running && copies.get(host) === p) {
            f.notes.push(`copy worker on ${host} exited after the restart (${lastError(p)}); started again`);
            startCopyOn(host);
          }
        }
      }, 250);
      try {
        const back = await waitForProgress({
          what: "the subscriber to answer again",
          measure: () => env.subscriber.query("select 1").then(() => true, () => false),
          done: (ok) => ok,
          intervalMs: 100,
        });
        expect(back).toBe(true);
        f.detectMs = Date.now() - restartAt;
        f.detectWhat = "subscriber answers again";
        await waitState(env, table, (s) => s === "ok", "ok after the restart");
        f.recoverMs = Date.now() - restartAt;
        f.recoverWhat = "table ok";
        await writer.waitCommits(20);
        await finish(f, writer, [name]);
      } finally {
        clearInterval(supervise);
      }
    } finally {
      active.child.kill("SIGCONT");
      await gate.open();
      await writer.stop().catch(() => {});
    }
  }, SCENARIO_TIMEOUT_MS);
});
