/**
 * The test harness itself: databases come and go, NATS answers requests and has JetStream,
 * and the run records the child processes the harness starts (for the end-of-run check).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { describe, expect, inject, it } from "vitest";
import { adminQuery, createTestDatabase, databaseUrl, natsUrl, uniqueName, uniqueSubjectPrefix } from "./support/db.ts";
import { aliveChildren, CHILDREN_FILE } from "./support/leftovers.ts";
import { ServiceProcess, useProcessCleanup } from "./support/processes.ts";

useProcessCleanup();

describe("test harness", () => {
  it("provides the server URLs and mirrors them in process.env", () => {
    expect(databaseUrl()).toMatch(/^postgres(ql)?:\/\//);
    expect(natsUrl()).toMatch(/^nats:\/\//);
    expect(process.env.DATABASE_URL).toBe(databaseUrl());
    expect(process.env.NATS_URL).toBe(natsUrl());
  });

  it("makes safe unique names", () => {
    const a = uniqueName("Harness Test-1");
    expect(a).toMatch(/^harness_test_1_[0-9a-f]{12}$/);
    expect(uniqueName("Harness Test-1")).not.toBe(a);
    expect(uniqueName("9lives")).toMatch(/^t_9lives_[0-9a-f]{12}$/);
    expect(uniqueName("x".repeat(100)).length).toBeLessThanOrEqual(63);
    expect(uniqueSubjectPrefix("a.b*c")).toMatch(/^test\.a_b_c_[0-9a-f]{12}$/);
  });

  it("creates, uses and drops databases", async () => {
    const one = await createTestDatabase("harness");
    const two = await createTestDatabase("harness");
    try {
      expect(one.name).not.toBe(two.name);
      for (const db of [one, two]) {
        const { rows } = await db.query<{ db: string; n: number }>("select current_database() as db, $1::int + 1 as n", [41]);
        expect(rows).toEqual([{ db: db.name, n: 42 }]);
      }
      // A session left open on the database (as a service under test might) must not block drop().
      const straggler = await one.pool.connect();
      await one.query("create table t (id int primary key)");
      await one.query("insert into t values (1)");
      const { rows } = await two.query("select to_regclass('public.t') as t");
      expect(rows[0]).toEqual({ t: null }); // separate databases
      straggler.release();
    } finally {
      await one.drop();
      await two.drop();
      await two.drop(); // idempotent
    }
    const { rows } = await adminQuery<{ n: string }>("select count(*) as n from pg_database where datname = any($1)", [
      [one.name, two.name],
    ]);
    expect(rows[0]?.n).toBe("0");
  });

  it("drops a database another client is still connected to", async () => {
    const db = await createTestDatabase("harness_force");
    const { Client } = (await import("pg")).default;
    const other = new Client({ connectionString: db.url });
    other.on("error", () => {});
    await other.connect();
    await db.drop();
    await expect(other.query("select 1")).rejects.toThrow();
    await other.end().catch(() => {});
    const { rows } = await adminQuery("select 1 from pg_database where datname = $1", [db.name]);
    expect(rows).toHaveLength(0);
  });

  it("records each child process in the run's directory; the end-of-run check sees it while it lives", async () => {
    const runDir = inject("runDir");
    expect(runDir).toBeTruthy();
    const p = new ServiceProcess("harness sleeper", "sleep", ["60"]);
    const line = readFileSync(join(runDir, CHILDREN_FILE), "utf8")
      .split("\n")
      .find((l) => l.startsWith(`${p.pid} `));
    expect(line).toMatch(new RegExp(`^${p.pid} \\d+ harness_sleeper ${process.pid}$`));
    expect(aliveChildren(runDir).map((c) => c.pid)).toContain(p.pid);
    await p.kill();
    expect(aliveChildren(runDir).map((c) => c.pid)).not.toContain(p.pid);
  });

  it("does request/reply on NATS and has JetStream", async () => {
    const nc = await connect({ servers: natsUrl() });
    try {
      const prefix = uniqueSubjectPrefix("harness");
      const sub = nc.subscribe(`${prefix}.echo`, {
        callback: (_err, msg) => {
          msg.respond(`echo:${msg.string()}`);
        },
      });
      await nc.flush();
      const reply = await nc.request(`${prefix}.echo`, "ping", { timeout: 5_000 });
      expect(reply.string()).toBe("echo:ping");
      sub.unsubscribe();

      const jsm = await jetstreamManager(nc);
      const info = await jsm.getAccountInfo();
      expect(info.limits).toBeDefined();
      const stream = uniqueName("harness");
      await jsm.streams.add({ name: stream, subjects: [`${prefix}.js.>`] });
      try {
        const js = jsm.jetstream();
        const ack = await js.publish(`${prefix}.js.one`, "hello");
        expect(ack.stream).toBe(stream);
        expect(ack.seq).toBe(1);
      } finally {
        await jsm.streams.delete(stream);
      }
    } finally {
      await nc.close();
    }
  });
});
