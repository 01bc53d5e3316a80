/**
 * Londiste rough edges a user hits, end to end with the ticker and replay
 * as their own OS processes and every step a `londiste CONF ...` call:
 *  - `provider remove-seq` ends the following on the subscriber (and
 *    `status` stops listing the sequence), as `provider remove` does for
 *    tables;
 *  - `provider remove` reaches the subscriber's set at once even while a
 *    long transaction (a copy of the table) reads the table on the
 *    provider, which the trigger drop has to wait for;
 *  - `subscriber unregister` stays in force while replay runs: replay does
 *    not register again nor start copying, `subscriber add` is refused,
 *    until `subscriber register`; both replies say what happens to the
 *    tables.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { TestDatabase } from "../support/db.ts";
import { expectOk, show } from "../support/pgqadm.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

useProcessCleanup();

let job: LondisteJob;
let replay: ServiceProcess;

beforeAll(async () => {
  job = await createLondisteJob({ label: "lond_rough" });
  replay = job.startReplay();
  await replay.waitForLog("serving admin commands on NATS");
  await installJob(job);
  for (const db of [job.provider, job.subscriber]) await db.query("create table pulse (id serial primary key)");
  expectOk(await job.londiste("provider", "add", "pulse"));
  expectOk(await job.londiste("subscriber", "add", "--expect-sync", "pulse"));
}, 60_000);

afterAll(async () => {
  await job?.drop();
});

const rowsOf = async (db: TestDatabase, sql: string, params?: unknown[]) => (await db.query(sql, params)).rows;

/** Inserts a pulse row on the provider and waits until it is on the subscriber: a batch after the insert was applied. */
async function pulse(): Promise<void> {
  const { rows } = await job.provider.query<{ id: number }>("insert into pulse default values returning id");
  const id = rows[0]!.id;
  await waitFor(async () => (await rowsOf(job.subscriber, "select 1 from pulse where id = $1", [id])).length === 1, { what: `pulse ${id} replicated` });
}

const inSet = async (table: string) =>
  (await rowsOf(job.subscriber, "select 1 from londiste.subscriber_table where table_name = $1", [table])).length > 0;

describe("rough edges", () => {
  it("provider remove-seq: the subscriber stops following the sequence and status stops listing it", async () => {
    for (const db of [job.provider, job.subscriber]) await db.query("create sequence sq");
    expectOk(await job.londiste("provider", "add-seq", "sq"));
    expectOk(await job.londiste("subscriber", "add-seq", "sq"));
    const value = async (db: TestDatabase) => Number((await rowsOf(db, "select last_value from sq"))[0].last_value);
    await job.provider.query("select setval('sq', 50)");
    await pulse();
    await waitFor(async () => (await value(job.subscriber)) === 50, { what: "sq = 50 on the subscriber" });
    expect((await job.londisteJson<{ seqs: string[] }>("status")).seqs).toEqual(["public.sq"]);

    expect(expectOk(await job.londiste("provider", "remove-seq", "sq"))).toBe("sq: removed\n");
    await waitFor(async () => (await job.londisteJson<{ seqs: string[] }>("status")).seqs.length === 0, {
      what: "status to stop listing public.sq",
      timeoutMs: 30_000,
    });
    expect(expectOk(await job.londiste("subscriber", "seqs"))).toBe("(nothing)\n");
    expect(expectOk(await job.londiste("status"))).not.toContain("Sequences:");
    await replay.waitForLog("sequences no longer registered on the provider", { where: (l) => JSON.stringify(l.seqs) === '["public.sq"]' });
    // No longer followed: a provider value ahead of the subscriber's stays there.
    await job.provider.query("select setval('sq', 900)");
    await pulse();
    expect(await value(job.subscriber)).toBe(50);
  });

  it("provider remove reaches the subscriber's set at once, also while a long transaction reads the table", async () => {
    for (const db of [job.provider, job.subscriber]) await db.query("create table busy (id int primary key)");
    expectOk(await job.londiste("provider", "add", "busy"));
    expectOk(await job.londiste("subscriber", "add", "--expect-sync", "busy"));
    await job.provider.query("insert into busy values (1)");
    await waitFor(async () => (await rowsOf(job.subscriber, "select 1 from busy")).length === 1, { what: "busy replicated" });

    // A reader like the copy of a big table: its lock makes dropping the capture trigger wait.
    const reader = await job.provider.pool.connect();
    let removal: ReturnType<typeof job.londiste> | undefined;
    try {
      await reader.query("begin isolation level repeatable read");
      await reader.query("select count(*) from busy");
      removal = job.londiste("--timeout", "300", "provider", "remove", "busy");
      await waitFor(async () => !(await inSet("public.busy")), { what: "busy dropped from the subscriber's set while the reader runs", timeoutMs: 30_000 });
      expect((await job.londisteJson<string[]>("provider", "tables"))).not.toContain("public.busy");
      // Row changes go on meanwhile, also to the table itself: the waiting trigger drop does not hold its writers up.
      await pulse();
      const writer = await job.provider.pool.connect();
      try {
        await writer.query("set statement_timeout = '20s'");
        await writer.query("insert into busy values (2)");
      } finally {
        writer.release();
      }
    } finally {
      await reader.query("commit").catch(() => {});
      reader.release();
    }
    const r = await removal!;
    expect(r.code, show(r)).toBe(0);
    expect(r.stdout).toBe("busy: removed; its capture trigger was dropped once the table's readers were done\n");
    expect(await rowsOf(job.provider, "select tgname from pg_trigger where tgrelid = 'busy'::regclass and not tgisinternal")).toEqual([]);
    expect(await rowsOf(job.subscriber, "select id from busy")).toEqual([{ id: 1 }]);
  });

  it("subscriber unregister stays in force while replay runs, until subscriber register", async () => {
    for (const db of [job.provider, job.subscriber]) await db.query("create table later (id int primary key)");
    expectOk(await job.londiste("provider", "add", "later"));
    const from = replay.lines.length;
    const out = expectOk(await job.londiste("subscriber", "unregister"));
    expect(out).toContain("unregistered: true");
    expect(out).toContain(
      'tables: every table goes back to (none); nothing is replayed or copied until "subscriber register", then every table is copied again',
    );
    await replay.waitForLog("unregistered by the operator", { from });
    // Ticks go by (each wakes replay); replay stays off the queue and no table is handed to a copy.
    for (let i = 0; i < 2; i++) {
      const before = await lastTickId(job.provider, job.queue);
      await job.provider.query("insert into pulse default values");
      await waitForTickAfter(job.provider, job.queue, before);
    }
    const consumers = async () =>
      rowsOf(job.provider, "select 1 from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer where c.co_name = $1", [job.jobName]);
    expect(await consumers()).toEqual([]);
    const states = await rowsOf(job.subscriber, "select table_name, merge_state from londiste.subscriber_table order by nr");
    expect(states).toEqual([
      { table_name: "public.pulse", merge_state: null },
    ]);
    const status = expectOk(await job.londiste("status"));
    expect(status).toContain('consumer unregistered by "subscriber unregister" at');
    const add = await job.londiste("subscriber", "add", "later");
    expect(add.code, show(add)).toBe(1);
    expect(add.stderr).toContain(`the consumer ${job.jobName} was unregistered by "subscriber unregister": run "`);
    expect(add.stderr).toMatch(/ subscriber register" first/);
    // Nothing doubled in replay's log lines meanwhile.
    expect(replay.lines.filter((l) => /Not subscriber to queue: (.+): Not subscriber to queue: \1/.test(JSON.stringify(l)))).toEqual([]);

    const back = expectOk(await job.londiste("subscriber", "register"));
    expect(back).toContain("registered: true");
    expect(back).toContain("resumed: replay goes on: tables in (none) are copied");
    await waitFor(async () => (await consumers()).length === 1, { what: "replay's consumer registered again" });
    await waitFor(async () => (await rowsOf(job.subscriber, "select merge_state from londiste.subscriber_table where table_name = 'public.pulse'"))[0]?.merge_state === "in-copy", {
      what: "pulse handed to a copy after register",
    });
    expect(expectOk(await job.londiste("subscriber", "add", "later"))).toContain("later: added");
    expect(expectOk(await job.londiste("status"))).not.toContain("unregistered");
  });
});
