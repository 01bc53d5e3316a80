/**
 * The copy worker's catching-up and its half of the handover, with no
 * replay running (the test plays replay's part through the state store):
 * ticker and copy worker are OS processes; the table is put into in-copy
 * while writers keep inserting, updating (also the key), and deleting its
 * rows. The test holds replay's position lock, so the copy cannot hand
 * over and keeps catching up: once the writers stop and the copy has
 * passed a tick after the last write, the subscriber table equals the
 * provider row by row (the rows the COPY saw plus the changes after its
 * snapshot, none twice: a repeated insert or delete would have stopped the
 * table). Released, the copy offers the handover: wanna-sync:T, and it
 * stays at T while more ticks come. The test then moves the table to
 * do-sync:T as replay would; the copy finishes: ok, its consumer and its
 * recorded tick gone.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lockConsumerPosition } from "../../shared/londiste/position.ts";
import { loadTableSync, writeTransition } from "../../shared/londiste/sync-store.ts";
import { copyConsumerName } from "../../services/copy/copy-consumer.ts";
import { expectOk } from "../support/pgqadm.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep, waitFor } from "../support/wait.ts";
import { createLondisteJob, installJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

const TABLE = "public.acct";
const ROWS = 40_000;
const WRITERS = 3;
const SCHEMA = `create table public.acct (id bigint primary key, v int not null, bal numeric(12,2), note text);`;

let job: LondisteJob;

async function tableRow() {
  return (await loadTableSync(job.subscriber.pool, job.queue, TABLE))!;
}

async function recorded(consumer: string): Promise<number | null> {
  const { rows } = await job.subscriber.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [consumer]);
  return rows[0]!.t === null ? null : Number(rows[0]!.t);
}

async function rowsOf(db: LondisteJob["provider"]): Promise<string[]> {
  const { rows } = await db.query<{ r: string }>(`select t::text as r from ${TABLE} t order by id`);
  return rows.map((r) => r.r);
}

/** Random single-table transactions in the writer's own key range, including key changes and rollbacks. */
async function writer(w: number, stop: () => boolean, counters: { committed: number }): Promise<void> {
  const client = new pg.Client({ connectionString: job.provider.url, application_name: `writer ${w}` });
  client.on("error", () => {});
  await client.connect();
  // Writer w owns the initial rows with id % WRITERS = w, and new ids base + n.
  let keys = Array.from({ length: ROWS }, (_, i) => i + 1).filter((id) => id % WRITERS === w);
  let next = (w + 1) * 10_000_000;
  const rnd = (n: number) => Math.floor(Math.random() * n);
  try {
    while (!stop()) {
      const work = [...keys];
      await client.query("begin");
      for (let i = 1 + rnd(5); i > 0; i--) {
        const roll = Math.random();
        if (roll < 0.3) {
          const id = ++next;
          await client.query("insert into public.acct values ($1, 0, $2, $3)", [id, (rnd(100000) / 100).toFixed(2), `new ${w}`]);
          work.push(id);
        } else if (roll < 0.7) {
          await client.query("update public.acct set v = v + 1, bal = bal + 1 where id = $1", [work[rnd(work.length)]]);
        } else if (roll < 0.8) {
          const at = rnd(work.length);
          const id = ++next;
          await client.query("update public.acct set id = $2, note = 'moved' where id = $1", [work[at], id]);
          work[at] = id;
        } else {
          const at = rnd(work.length);
          await client.query("delete from public.acct where id = $1", [work[at]]);
          work.splice(at, 1);
        }
      }
      if (Math.random() < 0.1) {
        await client.query("rollback");
      } else {
        await client.query("commit");
        keys = work;
        counters.committed++;
      }
    }
  } finally {
    await client.end();
  }
}

beforeAll(async () => {
  job = await createLondisteJob({ label: "copy_cu", extraConfig: ["copy_lease = 3", "log_level = debug"] });
  for (const db of [job.provider, job.subscriber]) await db.query(SCHEMA);
  await job.provider.query(
    `insert into public.acct select g, g % 10, g * 1.5, 'row ' || g from generate_series(1, ${ROWS}) g; analyze public.acct`,
  );
  // Replay only for the set-up commands; then it stops, and the test plays its part.
  const replay = job.startReplay("replay");
  await replay.waitForLog("active: this instance replays the job", { timeoutMs: 20_000 });
  await installJob(job);
  expectOk(await job.londiste("provider", "add", TABLE));
  expectOk(await job.londiste("subscriber", "register"));
  await replay.kill("SIGTERM");
});

afterAll(async () => {
  await job?.drop();
});

describe("copy worker without replay", () => {
  it("catches up under a write load to rows equal to the provider's, then offers the handover and finishes at do-sync", async () => {
    const copyConsumer = copyConsumerName(job.jobName, TABLE);
    // Replay's position lock, held: the copy cannot hand over.
    const replayLock = new pg.Client({ connectionString: job.subscriber.url });
    replayLock.on("error", () => {});
    await replayLock.connect();
    await replayLock.query("begin");
    await lockConsumerPosition(replayLock, job.jobName);

    let stopping = false;
    const counters = { committed: 0 };
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w, () => stopping, counters));
    let writerError: unknown;
    const writersDone = Promise.all(writers).catch((e: unknown) => (writerError = e));
    let copy: ServiceProcess;
    try {
      await sleep(300);
      await job.subscriber.query("select londiste.subscriber_add_table($1, $2)", [job.queue, TABLE]);
      expect((await writeTransition(job.subscriber.pool, await tableRow(), { type: "COPY.REQUESTED" }, "replay")).accepted).toBe(true);
      copy = new ServiceProcess("copy", process.execPath, [LONDISTE_LAUNCHER, job.conf, "copy"]);
      await waitFor(async () => (await tableRow()).sync.state === "catching-up", { timeoutMs: 30_000, what: "catching-up" });
      await copy.waitForLog("caught up, not handed over yet: replay is applying a batch", { timeoutMs: 30_000 });
      await sleep(1000);
    } finally {
      stopping = true;
      await writersDone;
    }
    expect(writerError).toBeUndefined();
    expect(counters.committed).toBeGreaterThan(30);

    // A tick after the last write; the copy passes it, still catching up.
    const { rows } = await job.provider.query<{ t: string }>("select pgq.force_tick($1) as t", [job.queue]);
    const after = await waitForTickAfter(job.provider, job.queue, Number(rows[0]!.t), 10_000);
    await waitFor(async () => ((await recorded(copyConsumer)) ?? 0) >= after, { timeoutMs: 30_000, what: `the copy to pass tick ${after}` });
    expect((await tableRow()).sync.state).toBe("catching-up");
    const [p, s] = await Promise.all([rowsOf(job.provider), rowsOf(job.subscriber)]);
    expect(s.length).toBe(p.length);
    expect(s).toEqual(p);
    // Changes after the snapshot were applied, and some before it were recognised as copied.
    const applied = copy!.logs("caught up one batch");
    expect(applied.reduce((n, l) => n + (l.changes as number), 0)).toBeGreaterThan(0);
    expect(applied.reduce((n, l) => n + (l.skippedVisible as number), 0)).toBeGreaterThan(0);

    // Replay lets go: the copy offers the handover at its tick and stops moving.
    await replayLock.query("commit");
    await replayLock.end();
    const wanna = await waitFor(
      async () => {
        const t = await tableRow();
        return t.sync.state === "wanna-sync" ? t : undefined;
      },
      { timeoutMs: 20_000, what: "wanna-sync" },
    );
    const T = wanna.sync.context.tick!;
    expect(T).toBeGreaterThanOrEqual(after);
    expect(T).toBeGreaterThanOrEqual(wanna.sync.context.fenceTick!);
    expect(await recorded(copyConsumer)).toBe(T);
    for (let i = 0; i < 3; i++) {
      await job.provider.query("update public.acct set v = v + 100 where id = (select min(id) from public.acct)");
      const { rows: f } = await job.provider.query<{ t: string }>("select pgq.force_tick($1) as t", [job.queue]);
      await waitForTickAfter(job.provider, job.queue, Number(f[0]!.t), 10_000);
    }
    await sleep(500);
    expect(await lastTickId(job.provider, job.queue)).toBeGreaterThan(T);
    expect(await recorded(copyConsumer)).toBe(T);
    expect((await tableRow()).sync.state).toBe("wanna-sync");

    // As replay at T: do-sync:T. The copy finishes.
    expect((await writeTransition(job.subscriber.pool, wanna, { type: "REPLAY.REACHED", replayTick: T }, "replay")).accepted).toBe(true);
    await waitFor(async () => (await tableRow()).sync.state === "ok", { timeoutMs: 20_000, what: "ok" });
    await waitFor(
      async () => {
        const { rows: c } = await job.provider.query("select 1 from pgq.get_consumer_info($1, $2)", [job.queue, copyConsumer]);
        return c.length === 0;
      },
      { timeoutMs: 10_000, what: "the copy consumer to be unregistered" },
    );
    expect(await recorded(copyConsumer)).toBeNull();
    const final = await tableRow();
    expect(final.leaseOwner).toBeNull();
    expect(copy!.logs("copy step failed")).toEqual([]);
  });
});
