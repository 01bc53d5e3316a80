/**
 * A copy worker that dies or stops in the middle of a copy: a dead copy
 * worker's lease expires and the table is taken up again by another worker
 * (docs/differences-from-skytools.md, "The copy and the handover";
 * Skytools never relaunched a dead copy). Ticker, replay
 * and copy workers are OS processes, copy_lease = 3 s; writers keep
 * changing the table. The subscriber table has an ALWAYS trigger that
 * slows the COPY down (a short sleep every 500 rows while public.gate says
 * so), so the worker can be caught in the middle of it.
 *  - kill -9 during in-copy: nothing of the copy is left on the subscriber
 *    (its transaction died with it: no rows, indexes and constraints in
 *    place), the table stays in-copy under the dead worker's lease until
 *    it expires; a second worker takes it then and finishes: ok, equal to
 *    the provider, same indexes and constraints.
 *  - SIGTERM during in-copy: the worker rolls back, releases the lease and
 *    exits 0; the next worker takes the table at once. A copy consumer left
 *    behind by a dead copy is dropped when a worker starts.
 *  - resync during in-copy cancels the running copy cleanly (its lease goes
 *    with the state change, the step is rolled back) and the table is
 *    copied again from the start.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { copyConsumerName } from "../../services/copy/copy-consumer.ts";
import { expectOk } from "../support/pgqadm.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep, waitFor } from "../support/wait.ts";
import { waitForTickAfter } from "../support/pgq-state.ts";
import { createLondisteJob, installJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

const TABLE = "public.big";
const ROWS = 60_000;
const SCHEMA = `
create table public.big (id int constraint big_pkey primary key, code text constraint big_code_key unique, v int not null, payload text);
create index big_v_idx on public.big (v);`;
const SLOW = `
create table public.gate (s float8 not null);
insert into public.gate values (0.1);
create function public.big_slow() returns trigger language plpgsql as $$
begin
    if new.id % 500 = 0 then perform pg_sleep((select s from public.gate)); end if;
    return new;
end $$;
create trigger big_slow before insert on public.big for each row execute function public.big_slow();
alter table public.big enable always trigger big_slow;`;

let job: LondisteJob;
let replay: ServiceProcess;
let n = 0;

function startCopy(): ServiceProcess {
  return new ServiceProcess(`copy-${++n}`, process.execPath, [LONDISTE_LAUNCHER, job.conf, "copy"]);
}

async function tableRow(): Promise<{ state: string | null; lease_owner: string | null; copy_progress: { rows?: number } | null }> {
  const { rows } = await job.subscriber.query(
    "select merge_state as state, lease_owner, copy_progress from londiste.subscriber_table where queue_name = $1 and table_name = $2",
    [job.queue, TABLE],
  );
  return rows[0] as never;
}

async function objects(): Promise<string[]> {
  const { rows } = await job.subscriber.query<{ d: string }>(
    `select c.relname || ': ' || pg_get_indexdef(i.indexrelid) as d from pg_index i join pg_class c on c.oid = i.indexrelid
      where i.indrelid = 'public.big'::regclass
     union all select conname || ': ' || pg_get_constraintdef(oid) from pg_constraint where conrelid = 'public.big'::regclass
     order by 1`,
  );
  return rows.map((r) => r.d);
}

async function subscriberCount(): Promise<number> {
  const { rows } = await job.subscriber.query<{ n: string }>("select count(*) as n from public.big");
  return Number(rows[0]!.n);
}

/** Updates and inserts on the provider table until stopped. */
function startWriter(): { stop: () => Promise<number> } {
  let stopping = false;
  let committed = 0;
  const run = (async () => {
    const client = new pg.Client({ connectionString: job.provider.url });
    client.on("error", () => {});
    await client.connect();
    let next = 10_000_000;
    try {
      while (!stopping) {
        await client.query("begin");
        await client.query("update public.big set v = v + 1 where id = $1", [1 + Math.floor(Math.random() * ROWS)]);
        await client.query("insert into public.big values ($1, $2, 0, 'late')", [++next, `late ${next}`]);
        if (Math.random() < 0.3) await client.query("delete from public.big where id = $1", [next - 1]);
        await client.query("commit");
        committed++;
        await sleep(5);
      }
    } finally {
      await client.end();
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

async function expectEqualToProvider(): Promise<void> {
  const { rows: t } = await job.provider.query<{ t: string }>("select pgq.force_tick($1) as t", [job.queue]);
  const tick = await waitForTickAfter(job.provider, job.queue, Number(t[0]!.t), 10_000);
  await waitFor(
    async () => {
      const { rows } = await job.subscriber.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [job.jobName]);
      return rows[0]!.t !== null && Number(rows[0]!.t) >= tick;
    },
    { timeoutMs: 30_000, intervalMs: 50, what: `replay to apply tick ${tick}` },
  );
  const dump = (db: LondisteJob["provider"]) =>
    db.query<{ r: string }>("select b::text as r from public.big b order by id").then((r) => r.rows.map((x) => x.r));
  const [p, s] = await Promise.all([dump(job.provider), dump(job.subscriber)]);
  expect(s.length).toBe(p.length);
  expect(s).toEqual(p);
}

beforeAll(async () => {
  job = await createLondisteJob({ label: "copy_kill", extraConfig: ["copy_lease = 3", "parallel_copies = 1", "log_level = debug"] });
  for (const db of [job.provider, job.subscriber]) await db.query(SCHEMA);
  await job.subscriber.query(SLOW);
  await job.provider.query(
    `insert into public.big select g, 'code ' || g, g % 100, repeat(md5(g::text), 3) from generate_series(1, ${ROWS}) g; analyze public.big`,
  );
  replay = job.startReplay("replay");
  await replay.waitForLog("active: this instance replays the job", { timeoutMs: 20_000 });
  await installJob(job);
  expectOk(await job.londiste("provider", "add", TABLE));
});

afterAll(async () => {
  await job?.drop();
});

describe("copy worker dies or stops during in-copy", () => {
  it("kill -9: another worker takes the table once the lease expires and finishes it", async () => {
    const before = await objects();
    expect(before.length).toBe(5); // 3 indexes, 2 constraints
    const writer = startWriter();
    let committed: number;
    try {
      const a = startCopy();
      expectOk(await job.londiste("subscriber", "add", "--force", TABLE)); // --force: the slow-down trigger
      await a.waitForLog("copying rows", { timeoutMs: 30_000 });
      await waitFor(async () => ((await tableRow()).copy_progress?.rows ?? 0) > 0, { timeoutMs: 15_000, what: "copy progress" });
      const owner = (await tableRow()).lease_owner;
      expect(owner).toMatch(new RegExp(`:${a.pid}:`));
      await a.kill("SIGKILL");
      const killedAt = Date.now();

      // Its transaction is gone with it: the table is as before the copy.
      await waitFor(async () => (await subscriberCount()) === 0 && (await objects()).length === 5, { timeoutMs: 10_000, what: "rollback" });
      expect(await objects()).toEqual(before);
      const row = await tableRow();
      expect(row.state).toBe("in-copy");
      expect(row.lease_owner).toBe(owner);

      await job.subscriber.query("update public.gate set s = 0");
      const b = startCopy();
      await b.waitForLog("claimed", { timeoutMs: 20_000 });
      // Not before the dead worker's lease ran out.
      expect(Date.now() - killedAt).toBeGreaterThan(1000);
      await waitFor(async () => (await tableRow()).state === "ok", { timeoutMs: 60_000, what: "ok" });
      expect(b.logs("copy finished: rows in place").length).toBe(1);
      await sleep(1000);
    } finally {
      committed = await writer.stop();
    }
    expect(committed).toBeGreaterThan(10);
    await expectEqualToProvider();
    expect(await objects()).toEqual(before);
  });

  it("SIGTERM: the worker rolls back, releases the lease and exits 0; the next one takes over at once", async () => {
    const before = await objects();
    await job.subscriber.query("update public.gate set s = 0.1");
    const c = startCopy();
    await c.waitForLog("copy worker starting", { timeoutMs: 20_000 });
    expectOk(await job.londiste("subscriber", "resync", TABLE));
    await c.waitForLog("copying rows", { timeoutMs: 30_000 });
    await sleep(500);
    await c.kill("SIGTERM");
    expect(c.exitInfo).toEqual({ code: 0, signal: null });
    const row = await tableRow();
    expect(row.state).toBe("in-copy");
    expect(row.lease_owner).toBeNull();
    expect(await objects()).toEqual(before);

    // A copy consumer left behind by some dead copy goes when a worker starts.
    const stale = `${job.jobName}_copy_0123456789`;
    await job.provider.query("select pgq.register_consumer($1, $2)", [job.queue, stale]);
    await job.subscriber.query("update public.gate set s = 0");
    const startedAt = Date.now();
    const d = startCopy();
    await d.waitForLog("claimed", { timeoutMs: 20_000 });
    expect(Date.now() - startedAt).toBeLessThan(15_000);
    await waitFor(async () => (await tableRow()).state === "ok", { timeoutMs: 60_000, what: "ok" });
    await d.waitForLog("dropped copy consumers left behind", { timeoutMs: 5_000 });
    // The copy drops its own consumer just after committing ok.
    const consumers = async () =>
      (await job.provider.query<{ c: string }>("select consumer_name as c from pgq.get_consumer_info($1) order by 1", [job.queue])).rows.map((r) => r.c);
    await waitFor(async () => (await consumers()).length === 1, { timeoutMs: 10_000, what: "only replay's consumer left" });
    expect(await consumers()).toEqual([job.jobName]);
    expect(copyConsumerName(job.jobName, TABLE)).not.toBe(stale);
    await expectEqualToProvider();
    expect(await objects()).toEqual(before);
  });

  it("resync during in-copy cancels the running copy; the table is copied again", async () => {
    const before = await objects();
    await job.subscriber.query("update public.gate set s = 0.1");
    const e = startCopy();
    await e.waitForLog("copy worker starting", { timeoutMs: 20_000 });
    expectOk(await job.londiste("subscriber", "resync", TABLE));
    await e.waitForLog("copying rows", { timeoutMs: 30_000 });
    await sleep(500);
    const from = e.lines.length;
    expectOk(await job.londiste("subscriber", "resync", TABLE));
    await e.waitForLog(/lease gone|step abandoned/, { from, timeoutMs: 10_000 });
    await job.subscriber.query("update public.gate set s = 0");
    await waitFor(async () => (await tableRow()).state === "ok", { timeoutMs: 60_000, what: "ok" });
    expect(e.logs("copy finished: rows in place").length).toBe(1);
    expect(e.logs("copy starting").length).toBe(2);
    expect(e.logs("table stopped")).toEqual([]);
    await expectEqualToProvider();
    expect(await objects()).toEqual(before);
  });
});
