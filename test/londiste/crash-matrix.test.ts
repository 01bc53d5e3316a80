/**
 * The crash matrix (docs/table-sync-machine.md): for each state of the table-sync machine —
 * (none), in-copy, catching-up, wanna-sync, do-sync, ok — and each actor —
 * replay, copy worker, ticker — kill -9 that actor while a table is in that
 * state, under a write load on the provider (inserts, updates, key changes,
 * deletes, some transactions rolled back); start it again; the table
 * reaches ok, equals the provider row by row, and every row change after
 * the copy's snapshot was applied exactly once (crash-helpers.ts).
 *
 * Each state is held on purpose while the actor is killed:
 *  - (none): the test holds replay's position lock (replay cannot start
 *    the round that requests the copy);
 *  - in-copy: the copy gate (the COPY waits at its first row, after the
 *    snapshot was taken);
 *  - catching-up: the apply gate (the copy's catch-up waits in the middle
 *    of its first batch with changes of the table);
 *  - wanna-sync: replay SIGSTOPped at a quiet moment before the copy
 *    offers the handover (it cannot reach the tick);
 *  - do-sync: then the copy SIGSTOPped at a quiet moment and replay
 *    continued (it takes the table over; the copy cannot finish);
 *  - ok: nothing to hold.
 * The state (and its version) is read right before and right after the
 * kill; a stopped actor that is not the victim is continued after the
 * kill, then gates and locks are released and the victim is restarted.
 *
 * One job per actor (copy_lease = 3 s, so a dead worker's table is taken
 * up soon), the three jobs in parallel, the six states one after another
 * on a table each. The work runs in beforeAll; one test per case reports
 * it.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk } from "../support/pgqadm.ts";
import { killProcesses, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import {
  type Actor,
  addTables,
  closeGate,
  createCrashEnv,
  createDataTables,
  type CrashEnv,
  ensureRunning,
  expectReplicated,
  freezeQuiet,
  type Gate,
  type Held,
  history,
  holdReplayLock,
  problems,
  restart,
  startWriter,
  type StateRow,
  tableRow,
  waitAtGate,
  waitingAtGate,
  waitState,
  type WriterStats,
} from "./crash-helpers.ts";

useProcessCleanup();

const STATES = ["none", "in-copy", "catching-up", "wanna-sync", "do-sync", "ok"] as const;
type State = (typeof STATES)[number];
const ACTORS: Actor[] = ["replay", "copy", "ticker"];
const ROWS = 3000;

const tableName = (state: State) => `t_${state.replace(/-/g, "_")}`;

interface CaseResult {
  state: State;
  actor: Actor;
  /** The table's row right before and right after the kill. */
  before?: StateRow;
  after?: StateRow;
  /** How the state was held at the kill. */
  hold: string;
  history?: Array<string | null>;
  writes?: WriterStats;
  applied?: Record<string, number>;
  ms: number;
  /** pid of the killed process. */
  victim?: number;
  error?: unknown;
}

const envs: CrashEnv[] = [];
const results = new Map<string, CaseResult>();
const key = (state: State, actor: Actor) => `${state} × ${actor}`;

async function runCase(env: CrashEnv, state: State, actor: Actor): Promise<CaseResult> {
  const started = Date.now();
  const { job } = env;
  const name = tableName(state);
  const table = `public.${name}`;
  const result: CaseResult = { state, actor, hold: "", ms: 0 };
  ensureRunning(env);
  const writer = startWriter(job.provider.url, name, ROWS);
  const gates: Gate[] = [];
  let lock: Held | undefined;
  let frozen: ServiceProcess | undefined;
  try {
    await writer.waitCommits(20);
    switch (state) {
      case "none":
        lock = await holdReplayLock(job);
        await addTables(job, [name]);
        result.hold = "replay's position lock held by the test";
        break;
      case "in-copy": {
        const copyGate = await closeGate(job, "copy", name);
        gates.push(copyGate);
        await addTables(job, [name]);
        await waitAtGate(job, "copy", name);
        result.hold = "the COPY waits at the copy gate";
        break;
      }
      case "catching-up": {
        const copyGate = await closeGate(job, "copy", name);
        gates.push(copyGate, await closeGate(job, "apply", name));
        await addTables(job, [name]);
        await waitAtGate(job, "copy", name);
        // Changes after the copy's snapshot, for the catch-up to apply.
        await writer.waitCommits(20);
        await copyGate.open();
        await waitAtGate(job, "apply", name);
        result.hold = "the catch-up waits at the apply gate in the middle of a batch";
        break;
      }
      case "wanna-sync":
      case "do-sync": {
        const copyGate = await closeGate(job, "copy", name);
        gates.push(copyGate);
        await addTables(job, [name]);
        await waitAtGate(job, "copy", name);
        const tries = await freezeQuiet(job, env.replay, "replay");
        frozen = env.replay;
        await copyGate.open();
        await waitState(job, table, (s) => s?.startsWith("wanna-sync:") === true, "wanna-sync");
        result.hold = `replay stopped (SIGSTOP, try ${tries})`;
        if (state === "do-sync") {
          const copyTries = await freezeQuiet(job, env.copy, "copy");
          frozen = env.copy;
          env.replay.child.kill("SIGCONT");
          await waitState(job, table, (s) => s?.startsWith("do-sync:") === true, "do-sync");
          result.hold = `copy stopped (SIGSTOP, try ${copyTries}) in wanna-sync, replay continued`;
        }
        break;
      }
      case "ok":
        await addTables(job, [name]);
        await waitState(job, table, (s) => s === "ok", "ok");
        result.hold = "none needed";
        break;
    }
    if (state === "in-copy" || state === "catching-up") {
      const waiting = await waitingAtGate(job, state === "in-copy" ? "copy" : "apply", name);
      result.hold += ` (${waiting} session waiting)`;
    }
    result.before = await tableRow(job, table);
    result.victim = env[actor].pid;
    await env[actor].kill("SIGKILL");
    result.after = await tableRow(job, table);
    if (frozen && frozen !== env[actor]) frozen.child.kill("SIGCONT");
    frozen = undefined;
    for (const g of gates) await g.open();
    await lock?.release();
    restart(env, actor);
    await waitState(job, table, (s) => s === "ok", "ok after the restart");
    result.writes = await writer.stop();
    result.applied = await expectReplicated(job, [name]);
    result.history = await history(job, table);
  } catch (error) {
    result.error = error;
    result.history = await history(job, table).catch(() => undefined);
  } finally {
    await writer.stop().catch(() => {});
    frozen?.child.kill("SIGCONT");
    for (const g of gates) await g.open();
    await lock?.release();
    result.ms = Date.now() - started;
  }
  return result;
}

beforeAll(async () => {
  const began = Date.now();
  await Promise.all(
    ACTORS.map(async (actor) => {
      const env = await createCrashEnv(`cm_${actor}`, ["parallel_copies = 1"]);
      envs.push(env);
      const names = STATES.map(tableName);
      await createDataTables(env.job, names, ROWS);
      expectOk(await env.job.londiste("provider", "add", ...names.map((n) => `public.${n}`)));
      for (const state of STATES) results.set(key(state, actor), await runCase(env, state, actor));
    }),
  );
  const lines = [...results.values()].map(
    (r) =>
      `${key(r.state, r.actor).padEnd(22)} ${r.error ? "FAILED" : "ok    "} ${String(r.ms).padStart(6)} ms  ` +
      `killed in ${JSON.stringify(r.before?.state)} (v${r.before?.version}) → after ${JSON.stringify(r.after?.state)} (v${r.after?.version}); ` +
      `hold: ${r.hold}; ${r.writes?.committed ?? "?"} txns; applied after snapshot ${JSON.stringify(r.applied)}`,
  );
  const warnings = envs.flatMap((e) => [
    `  ${e.label}: ${e.all.length} processes, ${e.all.reduce((n, p) => n + p.lines.length, 0)} log lines`,
    ...[...problems(e)].map(([k, n]) => `  ${k} x${n}`),
  ]);
  console.info(`crash matrix: ${Date.now() - began} ms\n${lines.join("\n")}\nwarnings and errors logged:\n${warnings.join("\n")}`);
  // The waits go by progress; the limit only stops a hang.
}, 1_500_000);

afterAll(async () => {
  await killProcesses();
  for (const env of envs) await env.job.drop();
});

const STATE_TEXT: Record<State, (s: string | null) => boolean> = {
  none: (s) => s === null,
  "in-copy": (s) => s === "in-copy",
  "catching-up": (s) => s === "catching-up",
  "wanna-sync": (s) => /^wanna-sync:\d+$/.test(s ?? ""),
  "do-sync": (s) => /^do-sync:\d+$/.test(s ?? ""),
  ok: (s) => s === "ok",
};

describe("kill -9 of each actor in each state, under a write load", () => {
  const cases = STATES.flatMap((state) => ACTORS.map((actor) => ({ state, actor })));
  it.each(cases)("$state × $actor: killed in that state; ok, equal, exactly once after the restart", ({ state, actor }) => {
    const r = results.get(key(state, actor));
    expect(r, "the case ran").toBeDefined();
    if (r!.error) throw r!.error;
    expect(STATE_TEXT[state](r!.before!.state), `state before the kill: ${JSON.stringify(r!.before)}`).toBe(true);
    // Nothing moved while the actor died.
    expect(r!.after).toEqual(r!.before);
    if (actor === "copy" && state !== "none" && state !== "ok") {
      // The killed worker was the one holding the table (lease_owner is host:pid:random).
      expect(r!.before!.leaseOwner?.split(":")[1]).toBe(String(r!.victim));
    }
    expect(r!.writes!.committed).toBeGreaterThan(30);
    expect(r!.writes!.rekeys + r!.writes!.deletes).toBeGreaterThan(0);
    const h = r!.history!;
    expect(h.at(-1)).toBe("ok");
    expect(h).not.toContain("error");
  });
});
