/**
 * Many tables added at once (docs/protocols.md, "Initial copy and the
 * handover to replay"): eight tables — six plain ones and
 * a parent/child pair whose child has a foreign key to the parent, on both
 * sides — are added with one `subscriber add` while writers keep changing
 * all of them; two copy workers with parallel_copies = 2 share the work.
 * Every COPY is held at its first rows (the copy gate of crash-helpers.ts)
 * until each worker holds two tables in the middle of their COPY; then one
 * worker is killed with SIGKILL and the gates open. The other worker
 * finishes its tables and takes the dead worker's tables once their leases
 * (copy_lease = 3 s) expire: all eight reach ok, equal to the provider row
 * by row, every change after each copy's snapshot applied exactly once;
 * the foreign key, parked during the copies, is back and validated, none
 * is pending, and no copy consumer is left on the provider.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk } from "../support/pgqadm.ts";
import { killProcesses, SERVICE_START_MS, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { sleep, waitForProgress } from "../support/wait.ts";
import {
  closeGate,
  createCrashEnv,
  createDataTables,
  type CrashEnv,
  expectReplicated,
  history,
  providerTriggersSql,
  startCopy,
  startWriter,
  subscriberTriggersSql,
  tableRow,
  waitingAtGate,
  waitState,
  type Writer,
} from "./crash-helpers.ts";

useProcessCleanup();

const PLAIN = ["m1", "m2", "m3", "m4", "m5", "m6"];
const ROWS = 10_000;
const PARENTS = 2_000;
const CHILDREN = 10_000;
const ALL = [...PLAIN, "parent", "child"];

const FK_SCHEMA = `
create table public.parent (id int primary key, v int not null, name text not null);
create table public.child (id int primary key, parent_id int not null, v int not null, note text,
                           constraint child_parent_fk foreign key (parent_id) references public.parent (id));
create index child_parent_idx on public.child (parent_id);
${providerTriggersSql("parent")}
${providerTriggersSql("child")}`;

let env: CrashEnv;

/** Parents are inserted and updated; children inserted, updated, re-parented, re-keyed and deleted. */
function startFkWriter(url: string): { stop: () => Promise<number> } {
  let stopping = false;
  let committed = 0;
  const rnd = (n: number) => Math.floor(Math.random() * n);
  const run = (async () => {
    const client = new pg.Client({ connectionString: url, application_name: "writer fk" });
    client.on("error", () => {});
    await client.connect();
    let parents = Array.from({ length: PARENTS }, (_, i) => i + 1);
    let children = Array.from({ length: CHILDREN }, (_, i) => i + 1);
    let next = 5_000_000;
    try {
      while (!stopping) {
        const p = [...parents];
        const c = [...children];
        await client.query("begin");
        for (let i = 0, n = 1 + rnd(4); i < n; i++) {
          const roll = Math.random();
          if (roll < 0.15) {
            // a new parent and a child of it in one transaction
            const pid = ++next;
            const cid = ++next;
            await client.query("insert into public.parent values ($1, 1, $2)", [pid, `parent ${pid}`]);
            await client.query("insert into public.child values ($1, $2, 1, 'new')", [cid, pid]);
            p.push(pid);
            c.push(cid);
          } else if (roll < 0.3) {
            await client.query("update public.parent set v = v + 1 where id = $1", [p[rnd(p.length)]]);
          } else if (roll < 0.5) {
            const cid = ++next;
            await client.query("insert into public.child values ($1, $2, 1, null)", [cid, p[rnd(p.length)]]);
            c.push(cid);
          } else if (roll < 0.7) {
            await client.query("update public.child set v = v + 1, note = $2 where id = $1", [c[rnd(c.length)], `n${rnd(100)}`]);
          } else if (roll < 0.8) {
            await client.query("update public.child set parent_id = $2, v = v + 1 where id = $1", [c[rnd(c.length)], p[rnd(p.length)]]);
          } else if (roll < 0.9) {
            const at = rnd(c.length);
            const cid = ++next;
            await client.query("update public.child set id = $2 where id = $1", [c[at], cid]);
            c[at] = cid;
          } else {
            const at = rnd(c.length);
            await client.query("delete from public.child where id = $1", [c[at]]);
            c.splice(at, 1);
          }
        }
        if (Math.random() < 0.1) {
          await client.query("rollback");
        } else {
          await client.query("commit");
          parents = p;
          children = c;
          committed++;
        }
        await sleep(2 + rnd(6));
      }
    } finally {
      await client.end().catch(() => {});
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

beforeAll(async () => {
  env = await createCrashEnv("copy_multi", ["parallel_copies = 2"]);
  const { job } = env;
  await createDataTables(job, PLAIN, ROWS);
  await job.provider.query(FK_SCHEMA);
  await job.subscriber.query(FK_SCHEMA.replace(/create trigger[^\n]*\n?/g, "") + subscriberTriggersSql("parent") + subscriberTriggersSql("child"));
  await job.provider.query(
    `insert into public.parent select g, 1, 'parent ' || g from generate_series(1, ${PARENTS}) g;
     insert into public.child select g, 1 + g % ${PARENTS}, 1, null from generate_series(1, ${CHILDREN}) g;
     analyze public.parent; analyze public.child;`,
  );
  expectOk(await job.londiste("provider", "add", ...ALL.map((t) => `public.${t}`)));
}, 600_000);

afterAll(async () => {
  await killProcesses();
  await env?.job.drop();
});

/** The worker part of lease_owner (host:pid:random) of a process. */
const ownedBy = (owner: string | null, p: ServiceProcess) => owner !== null && owner.split(":")[1] === String(p.pid);

describe("many tables, two copy workers, one killed mid-copy", () => {
  // The waits go by progress; the limit only stops a hang.
  it("all eight reach ok, equal, exactly once; the foreign key is back", { timeout: 900_000 }, async () => {
    const { job } = env;
    const foreignKeys = async () =>
      (
        await job.subscriber.query<{ name: string; v: boolean; def: string }>(
          `select conname as name, convalidated as v, pg_get_constraintdef(oid) as def from pg_constraint
            where contype = 'f' and conrelid in ('public.child'::regclass, 'public.parent'::regclass) order by 1`,
        )
      ).rows.map((r) => ({ ...r, def: r.def.replace("REFERENCES public.", "REFERENCES ") })); // dumpTable leaves search_path = pg_catalog on a pooled session
    const fkBefore = await foreignKeys();
    const a = env.copy;
    const b = startCopy(job, "copy_multi-copy-b");
    await b.waitForLog("copy worker starting", { timeoutMs: SERVICE_START_MS });
    const writers: Writer[] = PLAIN.map((t) => startWriter(job.provider.url, t, ROWS));
    const fkWriter = startFkWriter(job.provider.url);
    const gates = await Promise.all(ALL.map((t) => closeGate(job, "copy", t)));
    try {
      await Promise.all(writers.map((w) => w.waitCommits(10)));
      expectOk(await job.londiste("subscriber", "add", "--force", ...ALL.map((t) => `public.${t}`)));

      // Each worker holds two tables, each of them inside its COPY; progress is the tables' rows and sessions at the gates.
      const { ofA, ofB } = await waitForProgress({
        what: "both workers to copy two tables each",
        measure: async () => {
          const owners = await Promise.all(ALL.map(async (t) => ({ t, row: await tableRow(job, `public.${t}`), waiting: await waitingAtGate(job, "copy", t) })));
          const copying = owners.filter((o) => o.waiting > 0 && o.row?.state === "in-copy");
          return {
            ofA: copying.filter((o) => ownedBy(o.row!.leaseOwner, a)).map((o) => o.t),
            ofB: copying.filter((o) => ownedBy(o.row!.leaseOwner, b)).map((o) => o.t),
            owners,
          };
        },
        done: (m) => m.ofA.length === 2 && m.ofB.length === 2,
      });
      const held = { ofA, ofB };
      await a.kill("SIGKILL");
      for (const t of held.ofA) expect((await tableRow(job, `public.${t}`))?.state, t).toBe("in-copy");
      for (const g of gates) await g.open();

      for (const t of ALL) await waitState(job, `public.${t}`, (s) => s === "ok", "ok");
      // The survivor took up the dead worker's tables.
      const claimedByB = new Set(b.logs("claimed").map((l) => l.table as string));
      for (const t of held.ofA) expect(claimedByB.has(`public.${t}`), `${t} taken up by the other worker`).toBe(true);
      await sleep(1000);
    } finally {
      for (const g of gates) await g.open();
      const committed = await Promise.all([...writers.map((w) => w.stop().then((s) => s.committed)), fkWriter.stop()]);
      expect(Math.min(...committed)).toBeGreaterThan(20);
    }

    const applied = await expectReplicated(job, ALL);
    console.info(`copy-multi: changes applied after each copy's snapshot ${JSON.stringify(applied)}`);
    for (const t of ALL) {
      const h = await history(job, `public.${t}`);
      expect(h.slice(-5).map((s) => s?.replace(/:\d+$/, "")), `${t}: ${JSON.stringify(h)}`).toEqual([
        "in-copy",
        "catching-up",
        "wanna-sync",
        "do-sync",
        "ok",
      ]);
    }
    expect(await foreignKeys()).toEqual(fkBefore);
    expect(fkBefore).toEqual([{ name: "child_parent_fk", v: true, def: expect.stringMatching(/^FOREIGN KEY \(parent_id\) REFERENCES parent\(id\)$/) }]);
    const { rows: pending } = await job.subscriber.query("select * from londiste.subscriber_pending_fkeys");
    expect(pending).toEqual([]);
    expect(b.logs("table stopped")).toEqual([]);
    expect(b.logs("foreign key could not be restored")).toEqual([]);
  });
});
