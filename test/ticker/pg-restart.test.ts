/**
 * A real PostgreSQL restart under the ticker, on a private throwaway
 * cluster (the shared test server is never restarted): the ticker logs the
 * failure, reconnects with backoff once the server is back, becomes active
 * again and ticks; no tick snapshot goes backwards across the restart.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { natsUrl, uniqueSubjectPrefix } from "../support/db.ts";
import { findPostgresBin, type LocalPostgres, startLocalPostgres } from "../support/local-postgres.ts";
import { lastTickId, snapshotOrderViolations, waitForTickAfter } from "../support/pgq-state.ts";
import { makeTempDir, useProcessCleanup } from "../support/processes.ts";
import { runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";

useProcessCleanup();

const Q = "restart_q";
let server: LocalPostgres;
let pool: pg.Pool;
let conf: string;

beforeAll(async () => {
  const bin = await findPostgresBin();
  if (!bin) throw new Error("this test needs PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql");
  server = await startLocalPostgres(bin);
  pool = new pg.Pool({ connectionString: server.url, max: 2 });
  pool.on("error", () => {}); // idle clients die with the restart; queries below reconnect
  await installPgq(pool);
  await pool.query("select pgq.create_queue($1)", [Q]);
  await pool.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.3 seconds')", [Q]);
  conf = writeTickerConfig(makeTempDir("pgrestart"), { db: server.url, natsUrl: natsUrl(), subjectPrefix: uniqueSubjectPrefix("pgrestart") });
}, 600_000);

afterAll(async () => {
  await pool?.end().catch(() => {});
  await server?.stop();
});

describe("PostgreSQL restarted under the ticker", () => {
  it("reconnects, becomes active again and keeps ticking in order", async () => {
    const ticker = startTicker(conf, "ticker");
    await ticker.waitForLog("active: this instance ticks the database");
    const lastBefore = await lastTickId(pool, Q); // read first: the ticker may tick right after the insert
    await pool.query("select pgq.insert_event($1, 'x', 'before')", [Q]);
    const before = await waitForTickAfter(pool, Q, lastBefore);

    const fromLine = ticker.lines.length;
    await server.restart();

    await ticker.waitForLog("ticker database error; reconnecting", { from: fromLine, timeoutMs: 10_000 });
    await ticker.waitForLog("active: this instance ticks the database", { from: fromLine, timeoutMs: 20_000 });
    await pool.query("select pgq.insert_event($1, 'x', 'after')", [Q]);
    const after = await waitForTickAfter(pool, Q, before, 10_000);
    expect(after).toBeGreaterThan(before);
    expect(ticker.running).toBe(true);
    expect(await snapshotOrderViolations(pool, Q)).toEqual([]);

    const status = await runPgqadm([conf, "--json", "status"]);
    expect(status.code, show(status)).toBe(0);
    expect(JSON.parse(status.stdout).queues.map((q: { queue: string }) => q.queue)).toEqual([Q]);
  });
});
