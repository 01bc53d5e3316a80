/**
 * The copy service end to end (docs/protocols.md, "Initial copy and the
 * handover to replay"): ticker, replay and a copy
 * worker run as their own OS processes, the job is set up with the
 * londiste command line, and `subscriber add` (without --expect-sync)
 * leaves the rest to replay and the copy:
 *  - two tables, one with a foreign key to the other, copied while writers
 *    keep changing both: each goes (none) → in-copy → catching-up →
 *    wanna-sync:T → do-sync:T → ok, and once the writers stop the tables
 *    are equal row by row; every index and constraint is back with its
 *    name and definition, the foreign key too (parked while the tables were
 *    copied); the copy consumers are gone; progress came on NATS;
 *  - --skip-truncate keeps the subscriber's own rows;
 *  - a provider column missing on the subscriber puts the table into state
 *    error with "Column X does not exist on dest side".
 */
import type { NatsConnection } from "@nats-io/nats-core";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { natsUrl } from "../support/db.ts";
import { connectNatsClient } from "../support/nats.ts";
import { expectOk } from "../support/pgqadm.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep, waitFor } from "../support/wait.ts";
import { waitForTickAfter } from "../support/pgq-state.ts";
import { createLondisteJob, installJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

const SCHEMA = `
create table public.parent (id int primary key, name text not null constraint parent_name_key unique,
                            score int constraint score_not_negative check (score >= 0), payload text);
create index parent_score_idx on public.parent (score) where score > 10;
create table public.child (id bigint, parent_id int not null, v int not null default 0, note text,
                           constraint child_pkey primary key (id),
                           constraint child_parent_fk foreign key (parent_id) references public.parent (id) deferrable);
create index child_parent_v_idx on public.child (parent_id, v desc);
create unique index child_note_uidx on public.child (lower(note)) where note is not null;
create table public.keep (id int primary key, val text);
create table public.wide (id int primary key, val text, extra int);
`;
const PARENTS = 20_000;
const CHILDREN = 60_000;
const WRITERS = 3;

let job: LondisteJob;
let replay: ServiceProcess;
let copy: ServiceProcess;
let nc: NatsConnection;

function startCopy(label: string): ServiceProcess {
  return new ServiceProcess(label, process.execPath, [LONDISTE_LAUNCHER, job.conf, "copy"]);
}

async function tableState(table: string): Promise<{ state: string | null; error: string | null } | undefined> {
  const { rows } = await job.subscriber.query<{ merge_state: string | null; last_error: string | null }>(
    "select merge_state, last_error from londiste.subscriber_table where queue_name = $1 and table_name = $2",
    [job.queue, table],
  );
  return rows[0] ? { state: rows[0].merge_state, error: rows[0].last_error } : undefined;
}

async function waitState(table: string, want: (s: string | null) => boolean, timeoutMs = 60_000) {
  return waitFor(
    async () => {
      const s = await tableState(table);
      return s && want(s.state) ? s : undefined;
    },
    { timeoutMs, intervalMs: 100, what: `${table} to reach the expected state (now ${JSON.stringify(await tableState(table))})` },
  );
}

/** The rows of a table as text, ordered by its key. */
async function rowsOf(db: { query: LondisteJob["provider"]["query"] }, table: string): Promise<string[]> {
  const { rows } = await db.query<{ r: string }>(`select t::text as r from ${table} t order by 1`);
  return rows.map((r) => r.r);
}

async function expectEqual(table: string): Promise<number> {
  const [p, s] = await Promise.all([rowsOf(job.provider, table), rowsOf(job.subscriber, table)]);
  expect(s.length, `${table}: row count`).toBe(p.length);
  expect(s, `${table}: rows`).toEqual(p);
  return p.length;
}

/** Names and definitions of a table's indexes and constraints. */
async function objectsOf(db: LondisteJob["subscriber"], table: string): Promise<string[]> {
  const { rows } = await db.query<{ d: string }>(
    `select 'index ' || c.relname || ': ' || pg_get_indexdef(i.indexrelid) as d
       from pg_index i join pg_class c on c.oid = i.indexrelid where i.indrelid = $1::regclass
     union all
     select 'constraint ' || conname || ' on ' || conrelid::regclass || ': ' || pg_get_constraintdef(oid)
       from pg_constraint where conrelid = $1::regclass or confrelid = $1::regclass
     order by 1`,
    [table],
  );
  return rows.map((r) => r.d);
}

/** The states a table went through, from the outbox. */
async function history(table: string): Promise<Array<string | null>> {
  const { rows } = await job.subscriber.query<{ to_state: string | null }>(
    "select to_state from londiste.sync_outbox where queue_name = $1 and table_name = $2 order by id",
    [job.queue, table],
  );
  return rows.map((r) => r.to_state);
}

async function copyConsumers(): Promise<string[]> {
  const { rows } = await job.provider.query<{ c: string }>("select consumer_name as c from pgq.get_consumer_info($1) order by 1", [job.queue]);
  return rows.map((r) => r.c).filter((c) => c.startsWith(`${job.jobName}_copy_`));
}

/** A writer changing parent and child rows in its own key range until stopped. */
async function writer(w: number, stop: () => boolean, counters: { committed: number }): Promise<void> {
  const client = new pg.Client({ connectionString: job.provider.url, application_name: `writer ${w}` });
  client.on("error", () => {});
  await client.connect();
  const base = (w + 1) * 1_000_000;
  let next = 0;
  const parents: number[] = [];
  const children: number[] = [];
  const rnd = (n: number) => Math.floor(Math.random() * n);
  try {
    while (!stop()) {
      await client.query("begin");
      const ops = 1 + rnd(4);
      for (let i = 0; i < ops; i++) {
        const roll = Math.random();
        if (parents.length < 3 || roll < 0.25) {
          const id = base + ++next;
          await client.query("insert into public.parent values ($1, $2, $3, $4)", [id, `w${w}-${id}`, rnd(20), "new parent"]);
          parents.push(id);
        } else if (roll < 0.45) {
          const id = base + ++next;
          await client.query("insert into public.child values ($1, $2, $3, null)", [id, parents[rnd(parents.length)], rnd(5)]);
          children.push(id);
        } else if (roll < 0.6) {
          // also rows of the initial data, so updates hit copied rows
          const id = Math.random() < 0.5 ? 1 + rnd(PARENTS) : parents[rnd(parents.length)];
          await client.query("update public.parent set score = score + 1, payload = $2 where id = $1", [id, `touched by ${w}`]);
        } else if (roll < 0.8 && children.length > 0) {
          await client.query("update public.child set v = v + 1 where id = $1", [children[rnd(children.length)]]);
        } else if (children.length > 0) {
          const at = rnd(children.length);
          await client.query("delete from public.child where id = $1", [children[at]]);
          children.splice(at, 1);
        }
      }
      if (Math.random() < 0.1) {
        await client.query("rollback");
        // the ids of a rolled-back transaction are forgotten
        while (parents.length > 0 && parents[parents.length - 1]! > base + next - ops) parents.pop();
        while (children.length > 0 && children[children.length - 1]! > base + next - ops) children.pop();
      } else {
        await client.query("commit");
        counters.committed++;
      }
      await sleep(rnd(5));
    }
  } finally {
    await client.end();
  }
}

/** Forces a tick after everything committed so far and waits until replay has applied it. */
async function waitReplayed(): Promise<void> {
  const { rows } = await job.provider.query<{ t: string }>("select pgq.force_tick($1) as t", [job.queue]);
  const tick = await waitForTickAfter(job.provider, job.queue, Number(rows[0]!.t), 10_000);
  await waitFor(
    async () => {
      const { rows: r } = await job.subscriber.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [job.jobName]);
      return r[0]!.t !== null && Number(r[0]!.t) >= tick;
    },
    { timeoutMs: 30_000, intervalMs: 50, what: `replay to apply tick ${tick}` },
  );
}

beforeAll(async () => {
  job = await createLondisteJob({ label: "copy_ho", extraConfig: ["parallel_copies = 2", "copy_lease = 3", "log_level = debug"] });
  for (const db of [job.provider, job.subscriber]) await db.query(SCHEMA);
  // The subscriber's copy of "wide" lacks a column.
  await job.subscriber.query("alter table public.wide drop column extra");
  await job.provider.query(
    `insert into public.parent select g, 'name ' || g, g % 50, repeat('x', 40) from generate_series(1, ${PARENTS}) g;
     insert into public.child select g, 1 + g % ${PARENTS}, g % 7, case when g % 3 = 0 then 'note ' || g end
       from generate_series(1, ${CHILDREN}) g;
     insert into public.keep select g, 'provider ' || g from generate_series(1, 100) g;
     insert into public.wide select g, 'w' || g, g from generate_series(1, 10) g;
     analyze public.parent; analyze public.child;`,
  );
  replay = job.startReplay("replay");
  await replay.waitForLog("active: this instance replays the job", { timeoutMs: 20_000 });
  await installJob(job);
  expectOk(await job.londiste("provider", "add", "public.parent", "public.child", "public.keep", "public.wide"));
  copy = startCopy("copy");
  await copy.waitForLog("copy worker starting", { timeoutMs: 20_000 });
  nc = await connectNatsClient(natsUrl());
});

afterAll(async () => {
  await nc?.close();
  await job?.drop();
});

describe("copy service", () => {
  it("copies two tables under a write load and hands them over to replay: equal rows, same indexes and constraints", async () => {
    const before = {
      parent: await objectsOf(job.subscriber, "public.parent"),
      child: await objectsOf(job.subscriber, "public.child"),
    };
    expect(before.child.join("\n")).toContain("child_parent_fk");
    const progress: Array<Record<string, unknown>> = [];
    const sub = nc.subscribe(`${job.subjectPrefix}.londiste.${job.jobName}.copy.progress.>`, {
      callback: (_e, msg) => {
        progress.push(JSON.parse(msg.string()) as Record<string, unknown>);
      },
    });

    let stopping = false;
    const counters = { committed: 0 };
    const writers = Array.from({ length: WRITERS }, (_, w) => writer(w, () => stopping, counters));
    let writerError: unknown;
    const writersDone = Promise.all(writers).catch((e: unknown) => (writerError = e));
    try {
      await sleep(500);
      expectOk(await job.londiste("subscriber", "add", "public.parent", "public.child"));
      for (const t of ["public.parent", "public.child"]) await waitState(t, (s) => s === "ok", 90_000);
      // Both ok: the parked foreign key is back.
      const { rows: pending } = await job.subscriber.query("select * from londiste.subscriber_pending_fkeys");
      expect(pending).toEqual([]);
      // Replay carries on with the tables for a while, then the writers stop.
      await sleep(1500);
    } finally {
      stopping = true;
      await writersDone;
    }
    expect(writerError).toBeUndefined();
    expect(counters.committed).toBeGreaterThan(50);
    await waitReplayed();

    expect(await expectEqual("public.parent")).toBeGreaterThan(PARENTS);
    expect(await expectEqual("public.child")).toBeGreaterThan(CHILDREN / 2);
    expect(await objectsOf(job.subscriber, "public.parent")).toEqual(before.parent);
    expect(await objectsOf(job.subscriber, "public.child")).toEqual(before.child);
    // The restored foreign key was validated: it is not NOT VALID.
    const { rows: fk } = await job.subscriber.query<{ v: boolean }>("select convalidated as v from pg_constraint where conname = 'child_parent_fk'");
    expect(fk).toEqual([{ v: true }]);

    for (const t of ["public.parent", "public.child"]) {
      const h = await history(t);
      expect(h[0], `${t}: ${JSON.stringify(h)}`).toBeNull();
      expect(h.slice(1, 3), `${t}: ${JSON.stringify(h)}`).toEqual(["in-copy", "catching-up"]);
      const m = /^wanna-sync:(\d+)$/.exec(h[3] ?? "");
      expect(m, `${t}: ${JSON.stringify(h)}`).not.toBeNull();
      expect(h.slice(4), `${t}: ${JSON.stringify(h)}`).toEqual([`do-sync:${m![1]}`, "ok"]);
    }
    expect(await copyConsumers()).toEqual([]);
    const { rows: completed } = await job.subscriber.query<{ c: string }>("select consumer_id as c from londiste.completed");
    expect(completed.map((r) => r.c)).toEqual([job.jobName]);

    sub.unsubscribe();
    const done = progress.filter((p) => p.phase === "done");
    expect(done.map((p) => p.table).sort()).toEqual(["public.child", "public.parent"]);
    const childDone = done.find((p) => p.table === "public.child")!;
    expect(childDone.rows as number).toBeGreaterThanOrEqual(CHILDREN);
    expect(childDone.bytes as number).toBeGreaterThan(CHILDREN * 10);
    expect(childDone.estimated_rows).toBe(CHILDREN);
    const { rows: stored } = await job.subscriber.query<{ p: Record<string, unknown> }>(
      "select copy_progress as p from londiste.subscriber_table where table_name = 'public.child'",
    );
    expect(stored[0]!.p.phase).toBe("done");
    expect(copy.logs("copy step failed")).toEqual([]);
    expect(copy.logs("table stopped")).toEqual([]);
  });

  it("--skip-truncate keeps the subscriber's own rows", async () => {
    await job.subscriber.query("insert into public.keep select g, 'subscriber ' || g from generate_series(1001, 1010) g");
    expectOk(await job.londiste("subscriber", "add", "--skip-truncate", "public.keep"));
    await waitState("public.keep", (s) => s === "ok");
    const { rows } = await job.subscriber.query<{ n: string; own: string }>(
      "select count(*) as n, count(*) filter (where val like 'subscriber %') as own from public.keep",
    );
    expect(rows[0]).toEqual({ n: "110", own: "10" });
    const { rows: prov } = await job.subscriber.query<{ n: string }>("select count(*) as n from public.keep where id <= 100 and val = 'provider ' || id");
    expect(prov[0]!.n).toBe("100");
    // ok resets the flag
    const { rows: flag } = await job.subscriber.query("select skip_truncate from londiste.subscriber_table where table_name = 'public.keep'");
    expect(flag).toEqual([{ skip_truncate: null }]);
  });

  it("a provider column missing on the subscriber stops the table with a state error", async () => {
    const r = await job.londiste("subscriber", "add", "public.wide");
    expect(r.code).toBe(1); // the add check sees it too
    expectOk(await job.londiste("subscriber", "add", "--force", "public.wide"));
    const s = await waitState("public.wide", (st) => st === "error");
    expect(s.error).toContain("Column extra does not exist on dest side");
    // Nothing was changed on the subscriber table, and its copy consumer is gone.
    const { rows } = await job.subscriber.query<{ n: string }>("select count(*) as n from public.wide");
    expect(rows[0]!.n).toBe("0");
    await waitFor(async () => (await copyConsumers()).length === 0, { timeoutMs: 10_000, what: "the copy consumer to go" });
    expect(copy.logs("table stopped: state error").length).toBeGreaterThan(0);
  });
});
