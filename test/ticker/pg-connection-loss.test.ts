/**
 * Postgres connections lost under the ticker: its backends are terminated
 * (pg_terminate_backend), or the database refuses connections for a while
 * (what a server restart looks like to the ticker, without restarting the
 * cluster other test files share). The ticker logs the error, reconnects
 * with backoff and ticks again; admin commands work again too.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { adminQuery, createTestDatabase, natsUrl, quoteIdent, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { lastTickId, snapshotOrderViolations, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { sleep, waitFor } from "../support/wait.ts";

useProcessCleanup();

let db: TestDatabase;
let conf: string;
const Q = "pgloss_q";

beforeAll(async () => {
  db = await createTestDatabase("ticker_pg_loss");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue($1)", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.3 seconds')", [Q]);
  conf = writeTickerConfig(makeTempDir("pgloss"), { db: db.url, natsUrl: natsUrl(), subjectPrefix: uniqueSubjectPrefix("pgloss") });
});

afterAll(async () => {
  await adminQuery(`alter database ${quoteIdent(db.name)} allow_connections true`).catch(() => {});
  await db?.drop();
});

/** Inserts an event and waits for the ticker to cut a tick after `after`. */
async function tickAfter(after: number, timeoutMs = 5_000): Promise<number> {
  await waitFor(() => db.query("select pgq.insert_event($1, 'x', 'y')", [Q]).then(() => true), { timeoutMs, what: "the database to accept an insert" });
  return waitForTickAfter(db, Q, after, timeoutMs);
}

async function startActive(label: string): Promise<ServiceProcess> {
  const ticker = startTicker(conf, label);
  await ticker.waitForLog("active: this instance ticks the database");
  await ticker.waitForLog("serving admin commands on NATS");
  return ticker;
}

describe("Postgres connection loss", () => {
  it("after pg_terminate_backend of its connections, the ticker logs the error, reconnects and ticks again", async () => {
    const ticker = await startActive("ticker");
    const first = await tickAfter(await lastTickId(db, Q));
    expect(ticker.logs("ticker database error")).toEqual([]);

    const fromLine = ticker.lines.length;
    const { rows } = await db.query<{ pid: number; ok: boolean }>(
      "select pid, pg_terminate_backend(pid) as ok from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
    );
    // At least the ticker's lock connection (its admin pool may have had no idle connection).
    expect(rows.filter((r) => r.ok).length).toBeGreaterThanOrEqual(1);

    const error = await ticker.waitForLog("ticker database error; reconnecting", { from: fromLine, timeoutMs: 5_000 });
    expect(error.retryInMs).toBe(1000);
    await ticker.waitForLog("active: this instance ticks the database", { from: fromLine, timeoutMs: 5_000 });
    const next = await tickAfter(first);
    expect(next).toBeGreaterThan(first);
    expect(ticker.running).toBe(true);

    // The admin connections come back as well.
    const status = await runPgqadm([conf, "--json", "status"]);
    expect(status.code, show(status)).toBe(0);
    expect(JSON.parse(status.stdout).queues.map((q: { queue: string }) => q.queue)).toContain(Q);
    expect(await snapshotOrderViolations(db, Q)).toEqual([]);
  });

  it("while the database refuses connections it retries with growing backoff, answers commands with an error, and resumes when it is back", async () => {
    const ticker = await startActive("ticker-2");
    const before = await tickAfter(await lastTickId(db, Q));
    const fromLine = ticker.lines.length;

    await adminQuery(`alter database ${quoteIdent(db.name)} allow_connections false`);
    try {
      await adminQuery("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", [db.name]);
      // First error after the connection loss (retry in 1 s), then a failed reconnect (retry in 2 s).
      await ticker.waitForLog("ticker database error; reconnecting", { from: fromLine, timeoutMs: 5_000, where: (l) => l.retryInMs === 2000 });
      const down = await runPgqadm([conf, "status"]);
      expect(down.code, show(down)).toBe(1);
      expect(down.stderr).toMatch(/^pgqadm: status failed \(\w+\): .*(not currently accepting connections|Connection terminated)/m);
      expect(ticker.running).toBe(true);
    } finally {
      await adminQuery(`alter database ${quoteIdent(db.name)} allow_connections true`);
    }
    // The next try comes after the backoff logged last (it grew while the command above ran).
    const lastError = ticker.logs("ticker database error; reconnecting").at(-1)!;
    const retryAt = (lastError.time as number) + (lastError.retryInMs as number);
    await ticker.waitForLog("active: this instance ticks the database", { from: fromLine, timeoutMs: Math.max(0, retryAt - Date.now()) + 5_000 });
    const next = await tickAfter(before);
    expect(next).toBeGreaterThan(before);
    const ok = await runPgqadm([conf, "ping"]);
    expect(ok.code, show(ok)).toBe(0);
    expect(ok.stdout).toContain("state: active");
    await sleep(200);
    expect(await snapshotOrderViolations(db, Q)).toEqual([]);
  });
});
