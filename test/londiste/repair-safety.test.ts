/**
 * compare/repair when things go wrong (docs/protocols.md, "Compare and
 * repair: one consistent point"): tables that cannot be
 * compared are refused with the reason; replay killed before or during a
 * request makes it fail or complete cleanly, and replay is never left
 * paused: the hold on replay is deleted when the request ends, and a
 * worker killed while holding replay leaves a hold that expires by itself.
 * With --lock the provider table is unlocked when replay does not catch
 * up in time; a replay lagging more than the ticker lag + 10 s is refused
 * unless forced (as in Skytools). Two workers share the requests; concurrent
 * requests take turns holding replay. Ticker, replay and the repair workers are their own processes.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { natsUrl } from "../support/db.ts";
import { connectNatsClient, rawRequest } from "../support/nats.ts";
import { expectOk } from "../support/pgqadm.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep, waitFor } from "../support/wait.ts";
import { subscriberTick } from "./e2e-check.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

useProcessCleanup();

let job: LondisteJob;
let replay: ServiceProcess;
let worker: ServiceProcess;
let nc: NatsConnection;

interface Outcome {
  name: string;
  ok: boolean;
  status: string;
  message: string;
  tick?: number;
  applied?: { tick: number; inserts: number; updates: number; deletes: number };
}
type Reply = { result?: Outcome[]; error?: { code: string; message: string } };

const subject = (command: string) => `${job.subjectPrefix}.londiste.${job.jobName}.${command}`;
const send = (command: "compare" | "repair", body: Record<string, unknown>, timeoutMs = 50_000) =>
  rawRequest(nc, subject(command), JSON.stringify(body), timeoutMs) as Promise<Reply>;

async function ask(command: "compare" | "repair", body: Record<string, unknown>): Promise<Map<string, Outcome>> {
  const reply = await send(command, body);
  if (reply.error) throw new Error(`${command} failed: ${reply.error.code}: ${reply.error.message}`);
  return new Map(reply.result!.map((o) => [o.name, o]));
}

function startWorker(label: string): ServiceProcess {
  return new ServiceProcess(label, process.execPath, ["--import", "tsx", "services/repair/run.ts", job.conf]);
}

async function startReplay(): Promise<void> {
  replay = job.startReplay();
  await replay.waitForLog("active: this instance replays the job", { timeoutMs: 20_000 });
}

/**
 * Processes started inside a test are killed when it ends (useProcessCleanup): each test makes
 * sure replay and a worker run before it starts.
 */
async function ensureRunning(): Promise<void> {
  if (!replay.running) await startReplay();
  if (!worker.running) {
    worker = startWorker("repair-worker");
    await worker.waitForLog("serving compare and repair on NATS", { timeoutMs: 20_000 });
  }
}

beforeEach(ensureRunning, 30_000);

const holds = async () => (await job.subscriber.query<{ tick_id: string; expires_at: Date }>("select tick_id, expires_at from londiste.replay_hold")).rows;

/** Replay is not paused: a change made now on the provider reaches the subscriber. */
async function expectReplayFlows(): Promise<void> {
  const marker = `flow ${Date.now()}`;
  await job.provider.query("update public.t set v = $1 where id = 1", [marker]);
  await waitFor(async () => (await job.subscriber.query("select 1 from public.t where id = 1 and v = $1", [marker])).rows.length > 0, {
    timeoutMs: 15_000,
    what: "replay to apply a new change",
  });
}

beforeAll(async () => {
  job = await createLondisteJob({ label: "repsafe" });
  replay = job.startReplay();
  await replay.waitForLog("serving admin commands on NATS");
  await installJob(job);
  const ddl = `
    create table public.t (id int primary key, v text);
    create table public.big (id int primary key, v text);
    create table public.notok (id int primary key);
    create table public.gone (id int primary key);
    create table public.provgone (id int primary key);
    create table public.pkdiff (id int primary key, v int not null);
    create table public.nosub (id int primary key);`;
  await job.provider.query(ddl);
  await job.subscriber.query(ddl);
  for (const db of [job.provider, job.subscriber]) {
    await db.query("insert into public.t select g, 'v' || g from generate_series(1, 100) g");
    await db.query("insert into public.big select g, md5(g::text) from generate_series(1, 60000) g");
    await db.query("insert into public.pkdiff select g, g from generate_series(1, 10) g");
  }
  const all = ["public.t", "public.big", "public.notok", "public.gone", "public.provgone", "public.pkdiff", "public.nosub"];
  expectOk(await job.londiste("provider", "add", ...all));
  expectOk(await job.londiste("subscriber", "add", "--expect-sync", "public.t", "public.big", "public.gone", "public.provgone", "public.pkdiff"));
  expectOk(await job.londiste("subscriber", "add", "public.notok"));
  worker = startWorker("repair-worker");
  await worker.waitForLog("serving compare and repair on NATS", { timeoutMs: 20_000 });
  nc = await connectNatsClient(natsUrl());
});

afterAll(async () => {
  await nc?.close();
  await job?.drop();
});

describe("refusals", () => {
  it("tables not ok, missing on either side, with other primary keys or not replicated are refused with the reason", async () => {
    await job.subscriber.query("drop table public.gone");
    await job.provider.query("drop table public.provgone");
    await job.subscriber.query("alter table public.pkdiff drop constraint pkdiff_pkey, add primary key (id, v)");
    const named = await ask("compare", { tables: ["t", "notok", "gone", "provgone", "pkdiff", "nosub", "public.nothere"] });
    const show = (name: string) => [named.get(name)!.status, named.get(name)!.message];
    expect(show("public.t")).toEqual(["equal", "equal: 100 rows"]);
    expect(show("public.notok")[0]).toBe("refused");
    expect(show("public.notok")[1]).toMatch(/^public\.notok: state (\(none\)|in-copy): not in sync yet/);
    expect(show("public.gone")).toEqual(["refused", "public.gone: no such table on the subscriber"]);
    expect(show("public.provgone")).toEqual(["refused", "public.provgone: no such table on the provider"]);
    expect(show("public.pkdiff")).toEqual(["refused", "public.pkdiff: primary keys do not match: provider (id), subscriber (id, v)"]);
    expect(show("public.nosub")).toEqual(["refused", "public.nosub: not replicated by this job (londiste CONFIG subscriber add)"]);
    expect(show("public.nothere")[0]).toBe("refused");
    for (const o of named.values()) expect(o.ok).toBe(o.status === "equal");

    // repair refuses the same way and writes nothing for them.
    const repaired = await ask("repair", { tables: ["pkdiff", "gone"], dir: job.dir });
    expect([...repaired.values()].map((o) => o.status)).toEqual(["refused", "refused"]);

    // Not named: a table that is not in sync yet is skipped, not a failure.
    const all = await ask("compare", {});
    expect(all.get("public.notok")).toMatchObject({ status: "skipped", ok: true });
    expect(all.get("public.pkdiff")).toMatchObject({ status: "refused", ok: false });

    const bad = await send("repair", { apply: true, dry_run: true });
    expect(bad.error).toEqual({ code: "bad_request", message: "apply and dry_run do not go together" });
    const unknown = await send("compare", { tabels: ["t"] });
    expect(unknown.error?.code).toBe("bad_request");
    expect(await holds()).toEqual([]);
  });
});

describe("replay killed", () => {
  it("replay dead: the request fails after wait_seconds and the hold is gone; replay then catches up", async () => {
    await replay.kill();
    const started = Date.now();
    const reply = await send("compare", { tables: ["t"], wait_seconds: 2 });
    expect(reply.error?.code).toBe("unavailable");
    expect(reply.error?.message).toMatch(/^replay did not reach tick \d+ within 2 s/);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await holds()).toEqual([]);

    // --lock: the table lock is given up when replay does not catch up in time.
    const locked = await send("compare", { tables: ["t"], lock: true, wait_seconds: 2 });
    expect(locked.result?.[0]).toMatchObject({ status: "failed", ok: false });
    expect(locked.result![0]!.message).toMatch(/^Consumer lagging too much, exiting: replay did not reach tick \d+ within/);
    expect((await job.provider.query("select 1 from pg_locks where locktype = 'relation' and mode = 'ShareLock' and database = (select oid from pg_database where datname = current_database())")).rows).toEqual([]);

    // As in Skytools: replay lagging more than the ticker lag + 10 s is refused, unless forced.
    await waitFor(
      async () => {
        const r = await send("compare", { tables: ["t"], wait_seconds: 1 });
        return r.error?.code === "conflict" ? r.error : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 1000, what: "the lag refusal" },
    ).then((error) => expect(error.message).toMatch(/^Consumer lagging too much, cannot proceed: replay lags \d+\.\d s, the ticker \d+\.\d s/));
    const forced = await send("compare", { tables: ["t"], wait_seconds: 1, force: true });
    expect(forced.error?.code).toBe("unavailable");
    expect(await holds()).toEqual([]);
    await startReplay();
    await expectReplayFlows();
  });

  it("replay dead when the request comes, back while it waits: the request completes and replay goes on", async () => {
    await replay.kill();
    const pending = send("compare", { tables: ["t", "big"], wait_seconds: 30 });
    const [held] = await waitFor(async () => {
      const rows = await holds();
      return rows.length > 0 && Number(rows[0]!.tick_id) > 0 ? rows : undefined;
    });
    const tick = Number(held!.tick_id);
    await sleep(300);
    await startReplay();
    const reply = await pending;
    expect(reply.error).toBeUndefined();
    expect(reply.result!.map((o) => [o.status, o.tick])).toEqual([
      ["equal", tick],
      ["equal", tick],
    ]);
    expect(await holds()).toEqual([]);
    await expectReplayFlows();
  });

  it("repair --apply with replay killed between finding and applying: nothing applied, no hold; then it applies", async () => {
    await job.subscriber.query("delete from public.big where id in (10, 59000); update public.big set v = 'x' where id = 30000");
    const progress = nc.subscribe(`${subject("repair")}.progress`);
    let killed = false;
    void (async () => {
      for await (const m of progress) {
        const p = m.json<{ phase: string; table?: string }>();
        // The first consistent point is there (the table's checksum runs): replay is not needed again until applying.
        if (p.phase === "checksum" && !killed) {
          killed = true;
          await replay.kill();
        }
      }
    })();
    const reply = await send("repair", { tables: ["big"], apply: true, wait_seconds: 3, dir: job.dir });
    progress.unsubscribe();
    expect(killed).toBe(true);
    expect(reply.error).toBeUndefined();
    const big = reply.result![0]!;
    expect(big.status).toBe("failed");
    expect(big.message).toMatch(/missed: 2 inserts, 1 updates, 0 deletes.*not applied: replay did not reach tick \d+ within 3 s/s);
    expect((await job.subscriber.query("select count(*)::int as n from public.big")).rows[0].n).toBe(59998);
    expect(await holds()).toEqual([]);

    await startReplay();
    const applied = await ask("repair", { tables: ["big"], apply: true, dir: job.dir });
    expect(applied.get("public.big")!.applied).toMatchObject({ inserts: 2, updates: 1, deletes: 0 });
    expect((await ask("compare", { tables: ["big"] })).get("public.big")!.status).toBe("equal");
    await expectReplayFlows();
  });

  it("worker killed while it holds replay: the hold expires and replay goes on; a new worker takes over", async () => {
    await replay.kill();
    void send("compare", { tables: ["t"], hold_seconds: 8, wait_seconds: 60 }).catch(() => {});
    const [held] = await waitFor(async () => {
      const rows = await holds();
      return rows.length > 0 && Number(rows[0]!.tick_id) > 0 ? rows : undefined;
    });
    const tick = Number(held!.tick_id);
    await worker.kill();
    await startReplay();
    // Replay stops at the held tick until the hold expires (8 s after the worker's last refresh).
    await waitFor(async () => (await subscriberTick(job)) === tick, { timeoutMs: 8_000, what: `replay at the held tick ${tick}` });
    await sleep(1000);
    expect(await subscriberTick(job)).toBe(tick);
    await waitFor(async () => ((await subscriberTick(job)) ?? 0) > tick, { timeoutMs: 15_000, what: "replay past the expired hold" });
    await expectReplayFlows();

    worker = startWorker("repair-worker-2");
    await worker.waitForLog("serving compare and repair on NATS", { timeoutMs: 20_000 });
    expect((await ask("compare", { tables: ["t"] })).get("public.t")!.status).toBe("equal");
    expect(await holds()).toEqual([]);
  });

  it("two workers, concurrent requests: they take turns holding replay and both complete", async () => {
    const second = startWorker("repair-worker-3");
    await second.waitForLog("serving compare and repair on NATS", { timeoutMs: 20_000 });
    const replies = await Promise.all([0, 1, 2, 3].map(() => send("compare", { tables: ["t", "big"] })));
    for (const r of replies) {
      expect(r.error).toBeUndefined();
      expect(r.result!.map((o) => o.status)).toEqual(["equal", "equal"]);
    }
    expect(new Set(replies.map((r) => r.result![0]!.tick)).size).toBe(4);
    // Log lines come through a pipe: they may arrive after the replies.
    await waitFor(() => worker.logs("compare finished").length + second.logs("compare finished").length >= 4, { what: "4 compares logged" });
    expect(await holds()).toEqual([]);
    await expectReplayFlows();
  });
});
