/**
 * PostgreSQL restarted (`pg_ctl restart -m fast`) under a whole job, on a
 * private cluster that holds both the provider and the subscriber (the
 * shared test server is never restarted). Ticker, replay and a copy worker
 * are OS processes; writers keep changing the provider and reconnect
 * after each restart.
 *  - During an initial copy (slowed down on the subscriber by a trigger,
 *    so the restart finds it streaming rows): the copy's attempt fails
 *    with a log line that says so, the table is copied again and reaches
 *    ok, equal to the provider. Before the fix the worker hung on its
 *    dead connections while its lease heartbeat, on the healthy pool,
 *    kept the table its own: in-copy for good.
 *  - Several restarts in a row under a write load: no service exits (an
 *    unhandled `error` event of a pg client once ended replay), each
 *    resumes after every restart, and the tables end equal.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk } from "../support/pgqadm.ts";
import { findPostgresBin, type LocalPostgres, startLocalPostgres } from "../support/local-postgres.ts";
import { type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep, waitFor, waitForProgress } from "../support/wait.ts";
import { expectTablesEqual, subscriberTick, waitCaughtUp } from "./e2e-check.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

useProcessCleanup();

const ROWS = 40_000;
const RESTARTS = 10;
const SCHEMA = `
create table public.big (id int primary key, v int not null, payload text);
create table public.load (id int primary key, v int not null, note text);`;
/** On the subscriber: a pause every 500 copied rows while public.gate says so. */
const SLOW = `
create table public.gate (s float8 not null);
insert into public.gate values (0.25);
create function public.big_slow() returns trigger language plpgsql as $$
begin
    if new.id % 500 = 0 then perform pg_sleep((select s from public.gate)); end if;
    return new;
end $$;
create trigger big_slow before insert on public.big for each row execute function public.big_slow();
alter table public.big enable always trigger big_slow;`;

let server: LocalPostgres;
let job: LondisteJob;
let replay: ServiceProcess;
let copy: ServiceProcess;

async function tableState(table: string): Promise<{ state: string | null; rows: number }> {
  const { rows } = await job.subscriber.query<{ state: string | null; progress: { rows?: number } | null }>(
    "select merge_state as state, copy_progress as progress from londiste.subscriber_table where queue_name = $1 and table_name = $2",
    [job.queue, table],
  );
  return { state: rows[0]?.state ?? null, rows: rows[0]?.progress?.rows ?? 0 };
}

/**
 * Writes to a provider table until stopped, through restarts: a failed
 * transaction is dropped with its connection and the next one opens a new
 * connection. Returns the transactions known committed.
 */
function startWriter(table: "public.big" | "public.load", firstId: number): { stop: () => Promise<number> } {
  let stopping = false;
  let committed = 0;
  const run = (async () => {
    let next = firstId;
    while (!stopping) {
      const client = new pg.Client({ connectionString: job.provider.url });
      client.on("error", () => {}); // the restart: the next query reports it
      try {
        await client.connect();
        while (!stopping) {
          await client.query("begin");
          await client.query(`insert into ${table} values ($1, 0, 'w')`, [++next]);
          await client.query(`update ${table} set v = v + 1 where id = $1`, [firstId + 1 + Math.floor(Math.random() * (next - firstId))]);
          if (Math.random() < 0.2) await client.query(`delete from ${table} where id = $1`, [next - 1]);
          await client.query("commit");
          committed++;
          await sleep(5);
        }
      } catch {
        await sleep(100); // the server is restarting
      } finally {
        await client.end().catch(() => {});
      }
    }
  })();
  return {
    stop: async () => {
      stopping = true;
      await run;
      return committed;
    },
  };
}

function expectAllRunning(): void {
  for (const p of [job.ticker, replay, copy]) expect(p.running, `${p.label} exited: ${JSON.stringify(p.exitInfo)}\n${p.tail()}`).toBe(true);
}

beforeAll(async () => {
  const bin = await findPostgresBin();
  if (!bin) throw new Error("this test needs PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql");
  server = await startLocalPostgres(bin);
  job = await createLondisteJob({ label: "pg_restart", serverUrl: server.url, extraConfig: ["copy_lease = 3", "parallel_copies = 1"] });
  for (const db of [job.provider, job.subscriber]) {
    // Pooled connections die with each restart; the pool's next query opens a new one.
    db.pool.on("error", () => {});
    await db.query(SCHEMA);
  }
  await job.subscriber.query(SLOW);
  await job.provider.query(`insert into public.big select g, g % 100, repeat(md5(g::text), 3) from generate_series(1, ${ROWS}) g; analyze public.big`);
  await job.provider.query("insert into public.load select g, 0, 'initial' from generate_series(1, 1000) g");
  replay = job.startReplay("replay");
  await replay.waitForLog("active: this instance replays the job", { timeoutMs: 60_000 });
  await installJob(job);
  copy = job.start("copy", "copy");
  await copy.waitForLog("copy worker starting", { timeoutMs: 60_000 });
}, 240_000);

afterAll(async () => {
  await job?.drop();
  await server?.stop();
}, 120_000);

describe("PostgreSQL restarted under a job", () => {
  it("during the initial copy: the attempt fails, is logged, and the table is copied again to ok", async () => {
    expectOk(await job.londiste("provider", "add", "public.big"));
    const writer = startWriter("public.big", 10_000_000);
    let committed: number;
    try {
      expectOk(await job.londiste("subscriber", "add", "--force", "public.big")); // --force: the slow-down trigger
      await copy.waitForLog("copying rows", { timeoutMs: 60_000 });
      await waitFor(async () => (await tableState("public.big")).rows > 0, { timeoutMs: 30_000, what: "copy progress" });
      const fromLine = copy.lines.length;
      await server.restart();
      await waitFor(() => job.subscriber.query("update public.gate set s = 0").then(() => true), { timeoutMs: 30_000, what: "the subscriber back" });

      // The attempt fails (a lost connection: retried), and says so.
      await copy.waitForLog("copy step failed; retrying", { from: fromLine, timeoutMs: 60_000, where: (l) => l.state === "in-copy" && l.kind === "transient" });
      await waitForProgress({
        what: "public.big to reach ok after the restart",
        measure: () => tableState("public.big"),
        done: (t) => t.state === "ok",
        stallMs: 60_000,
      });
      expect(copy.logs("copy finished: rows in place").length).toBe(1);
    } finally {
      committed = await writer.stop();
    }
    expect(committed).toBeGreaterThan(10);
    await waitCaughtUp(job);
    await expectTablesEqual(job, "public.big", ["id"]);
    expectAllRunning();
  });

  // About 3 s per restart on an idle machine; a loaded one takes several times that (each wait is on progress).
  it(`${RESTARTS} restarts in a row under a write load: every service stays up and the tables end equal`, { timeout: 600_000 }, async () => {
    expectOk(await job.londiste("provider", "add", "public.load"));
    expectOk(await job.londiste("subscriber", "add", "public.load"));
    await waitForProgress({ what: "public.load to reach ok", measure: () => tableState("public.load"), done: (t) => t.state === "ok" });
    const writers = [startWriter("public.load", 20_000_000), startWriter("public.big", 30_000_000)];
    let committed: number[];
    try {
      for (let i = 0; i < RESTARTS; i++) {
        const before = await waitFor(() => subscriberTick(job), { timeoutMs: 30_000, what: "the subscriber's tick" });
        await server.restart();
        // Replay is back: it records a tick later than the one before the restart (the writers keep making events).
        await waitForProgress({
          what: `replay to apply a batch after restart ${i + 1}`,
          measure: () => subscriberTick(job),
          done: (t) => t !== null && t > before,
          stallMs: 60_000,
        });
        expectAllRunning();
      }
    } finally {
      committed = await Promise.all(writers.map((w) => w.stop()));
    }
    expect(Math.min(...committed)).toBeGreaterThan(10);
    await waitCaughtUp(job);
    await expectTablesEqual(job, "public.load", ["id"]);
    await expectTablesEqual(job, "public.big", ["id"]);
    expectAllRunning();
    // Each service said what failed and reconnected.
    expect(replay.logs("replay failed; retrying").length).toBeGreaterThan(0);
  });
});
