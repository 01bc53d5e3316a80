/**
 * `subscriber resync` in every state of the table-sync machine, and
 * `subscriber remove` during a copy (docs/table-sync-machine.md), with
 * ticker, replay and
 * a copy worker as OS processes and a writer changing the table all along.
 * The state is held while the command runs (crash-helpers.ts), in ways
 * that leave replay answering commands and its position lock free:
 *  - (none) and wanna-sync: a replay hold (londiste.replay_hold, the hold
 *    compare/repair use) at replay's tick, with a batch after it: replay
 *    neither requests copies nor reaches the handover tick;
 *  - in-copy / catching-up: the copy / apply gate;
 *  - do-sync: the copy SIGSTOPped at a quiet moment in wanna-sync, then
 *    the replay hold released;
 *  - ok: nothing.
 * After a resync the table goes back to (none), the running copy (if any)
 * is cancelled, and the table is copied again: ok, equal row by row, the
 * changes after the last copy's snapshot applied exactly once. After a
 * remove the copy stops, rolls back, the table leaves the set and its copy
 * consumer is unregistered on the provider.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk } from "../support/pgqadm.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { killProcesses, useProcessCleanup } from "../support/processes.ts";
import { waitForProgress } from "../support/wait.ts";
import { subscriberTick, waitCaughtUp } from "./e2e-check.ts";
import type { LondisteJob } from "./job.ts";
import {
  addTables,
  closeGate,
  copyConsumers,
  createCrashEnv,
  createDataTables,
  type CrashEnv,
  expectReplicated,
  freezeQuiet,
  type Gate,
  history,
  holdReplayLock,
  startWriter,
  tableRow,
  waitAtGate,
  waitingAtGate,
  waitState,
  type Writer,
} from "./crash-helpers.ts";

useProcessCleanup();

const STATES = ["none", "in-copy", "catching-up", "wanna-sync", "do-sync", "ok"] as const;
type State = (typeof STATES)[number];
const ROWS = 3000;
const tableName = (state: State) => `r_${state.replace(/-/g, "_")}`;
const REMOVED = "rm_copy";

let env: CrashEnv;

/**
 * Holds replay at its recorded tick (londiste.replay_hold), set under its
 * position lock, and waits for a tick after it: from then on replay always
 * has a batch it leaves alone, so it makes no state step either.
 */
async function holdReplay(job: LondisteJob): Promise<{ tick: number; release: () => Promise<void> }> {
  const lock = await holdReplayLock(job);
  let tick: number | null;
  try {
    tick = await subscriberTick(job);
    if (tick === null) throw new Error("replay has no recorded tick yet");
    await job.subscriber.query(
      `insert into londiste.replay_hold (consumer_id, tick_id, requested_by, expires_at)
       values ($1, $2, 'test', now() + interval '5 minutes')
       on conflict (consumer_id) do update set tick_id = excluded.tick_id, expires_at = excluded.expires_at`,
      [job.jobName, tick],
    );
  } finally {
    await lock.release();
  }
  await waitForTickAfter(job.provider, job.queue, Math.max(tick, await lastTickId(job.provider, job.queue)));
  let released: Promise<void> | undefined;
  return {
    tick,
    release: () => (released ??= job.subscriber.query("delete from londiste.replay_hold where consumer_id = $1", [job.jobName]).then(() => {})),
  };
}

/** The outbox row of the admin's RESYNC of `table`. */
async function resyncRow(job: LondisteJob, table: string) {
  const { rows } = await job.subscriber.query<{ id: string; from_state: string | null; to_state: string | null }>(
    `select id, from_state, to_state from londiste.sync_outbox
      where queue_name = $1 and table_name = $2 and event->>'type' = 'RESYNC' and event->>'actor' = 'admin' order by id`,
    [job.queue, table],
  );
  return rows;
}

beforeAll(async () => {
  env = await createCrashEnv("copy_resync", ["parallel_copies = 2"]);
  const names = [...STATES.map(tableName), REMOVED];
  await createDataTables(env.job, names, ROWS);
  // A table in sync from the start, so replay is registered and records ticks before the first case.
  await env.job.provider.query("create table public.base (id int primary key)");
  await env.job.subscriber.query("create table public.base (id int primary key)");
  expectOk(await env.job.londiste("provider", "add", "public.base", ...names.map((n) => `public.${n}`)));
  expectOk(await env.job.londiste("subscriber", "add", "--expect-sync", "public.base"));
  await waitCaughtUp(env.job);
}, 600_000);

afterAll(async () => {
  await killProcesses();
  await env?.job.drop();
});

describe("subscriber resync in each state", () => {
  it.each(STATES.map((state) => ({ state })))("$state: back to (none), copied again, ok, equal, exactly once", async ({ state }) => {
    const { job } = env;
    const name = tableName(state);
    const table = `public.${name}`;
    const writer: Writer = startWriter(job.provider.url, name, ROWS);
    const gates: Gate[] = [];
    let hold: Awaited<ReturnType<typeof holdReplay>> | undefined;
    let frozen = false;
    const copyStartsBefore = env.copy.logs("copy starting").filter((l) => l.table === table).length;
    try {
      await writer.waitCommits(20);
      switch (state) {
        case "none":
          hold = await holdReplay(job);
          await addTables(job, [name]);
          break;
        case "in-copy":
          gates.push(await closeGate(job, "copy", name));
          await addTables(job, [name]);
          await waitAtGate(job, "copy", name);
          break;
        case "catching-up": {
          const copyGate = await closeGate(job, "copy", name);
          gates.push(copyGate, await closeGate(job, "apply", name));
          await addTables(job, [name]);
          await waitAtGate(job, "copy", name);
          await writer.waitCommits(20);
          await copyGate.open();
          await waitAtGate(job, "apply", name);
          break;
        }
        case "wanna-sync":
        case "do-sync": {
          const copyGate = await closeGate(job, "copy", name);
          gates.push(copyGate);
          await addTables(job, [name]);
          await waitAtGate(job, "copy", name);
          hold = await holdReplay(job);
          await copyGate.open();
          const w = await waitState(job, table, (s) => s?.startsWith("wanna-sync:") === true, "wanna-sync");
          expect(Number(w.state!.split(":")[1])).toBeGreaterThan(hold.tick);
          if (state === "do-sync") {
            await freezeQuiet(job, env.copy, "copy");
            frozen = true;
            await hold.release();
            await waitState(job, table, (s) => s?.startsWith("do-sync:") === true, "do-sync");
          }
          break;
        }
        case "ok":
          await addTables(job, [name]);
          await waitState(job, table, (s) => s === "ok", "ok");
          break;
      }
      const before = await tableRow(job, table);
      const r = await job.londiste("subscriber", "resync", table);
      expectOk(r);
      expect(r.stdout).toContain("now (none)");
      // The resync came from the held state.
      const resyncs = await resyncRow(job, table);
      expect(resyncs.map((x) => [x.from_state, x.to_state])).toEqual([[before!.state, null]]);

      if (frozen) env.copy.child.kill("SIGCONT");
      frozen = false;
      for (const g of gates) await g.open();
      await hold?.release();
      await waitState(job, table, (s) => s === "ok", "ok after the resync");
      await writer.stop();
      await expectReplicated(job, [name]);

      // After the resync: the whole way again, from one copy that finished.
      const h = await history(job, table);
      const after = h.slice(h.lastIndexOf(null) + 1).map((s) => s?.replace(/:\d+$/, ""));
      expect(after, JSON.stringify(h)).toEqual(["in-copy", "catching-up", "wanna-sync", "do-sync", "ok"]);
      const { rows: done } = await job.subscriber.query<{ id: string }>(
        "select id from londiste.sync_outbox where table_name = $1 and event->>'type' = 'COPY.DONE' and id > $2",
        [table, resyncs[0]!.id],
      );
      expect(done).toHaveLength(1);
      if (state === "in-copy" || state === "catching-up") {
        // The running copy was cancelled and the table copied again from the start.
        expect(env.copy.logs("copy starting").filter((l) => l.table === table).length - copyStartsBefore).toBe(2);
      }
      expect(env.copy.logs("table stopped")).toEqual([]);
    } finally {
      if (frozen) env.copy.child.kill("SIGCONT");
      for (const g of gates) await g.open();
      await hold?.release();
      await writer.stop().catch(() => {});
    }
    // The waits go by progress; the limit only stops a hang.
  }, 900_000);
});

describe("subscriber remove during the copy", () => {
  it("the copy stops and rolls back, the table leaves the set, its copy consumer is unregistered", { timeout: 900_000 }, async () => {
    const { job } = env;
    const table = `public.${REMOVED}`;
    const writer = startWriter(job.provider.url, REMOVED, ROWS);
    const gate = await closeGate(job, "copy", REMOVED);
    try {
      await writer.waitCommits(20);
      await addTables(job, [REMOVED]);
      await waitAtGate(job, "copy", REMOVED);
      expect((await tableRow(job, table))?.state).toBe("in-copy");
      expect(await copyConsumers(job)).toHaveLength(1);

      expectOk(await job.londiste("subscriber", "remove", table));
      expect(await tableRow(job, table)).toBeUndefined();
      await gate.open();
      // The COPY's transaction is rolled back: no session left at the gate, the copy consumer gone.
      await waitForProgress({ what: "the COPY to end", measure: () => waitingAtGate(job, "copy", REMOVED), done: (n) => n === 0 });
      await waitForProgress({ what: "the copy consumer to be unregistered", measure: () => copyConsumers(job), done: (c) => c.length === 0 });
      const { rows: consumers } = await job.provider.query<{ c: string }>("select consumer_name as c from pgq.get_consumer_info($1) order by 1", [job.queue]);
      expect(consumers.map((c) => c.c)).toEqual([job.jobName]);

      // Replay goes on without it; the subscriber table keeps what it had (nothing).
      await waitCaughtUp(job);
      const { rows } = await job.subscriber.query<{ n: string }>(`select count(*) as n from ${table}`);
      expect(rows[0]!.n).toBe("0");
      const h = await history(job, table);
      expect(h.at(-1)).toBe("removed");
      const tables = await job.londisteJson<Array<{ table: string }>>("subscriber", "tables");
      expect(tables.map((t) => t.table)).not.toContain(table);
      // The worker does not pick it up again.
      await waitCaughtUp(job);
      expect(env.copy.logs("copy starting").filter((l) => l.table === table)).toHaveLength(1);
      expect(env.copy.logs("claimed").filter((l) => l.table === table)).toHaveLength(1);
    } finally {
      await gate.open();
      await writer.stop().catch(() => {});
    }
  });
});
