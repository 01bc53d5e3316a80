/**
 * The log_db destination end to end (docs/logdb.md): a ticker service, run
 * as its own process with `log_db` set, ships its log records through the
 * PgQ queue of a log database installed from sql/logdb/install.sql, and
 * `pgqadm CONF logs` shows them, filtered by service, level and time. Then
 * the log database is dropped: the ticker goes on ticking, its
 * skytools_log_db_dropped_total rises on /metrics, and `logs` says it
 * cannot read the log database.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runSqlScript } from "../../shared/db/sql-script.ts";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { freePort } from "../support/local-postgres.ts";
import { runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { makeTempDir, REPO_ROOT, type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor, waitForProgress } from "../support/wait.ts";

useProcessCleanup();

let db: TestDatabase;
let logDb: TestDatabase;
let conf: string;
let metricsPort: number;
let ticker: ServiceProcess;

async function metric(name: string): Promise<number | undefined> {
  const body = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = body.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(" ").at(-1));
}

const ticks = async () => Number((await db.query("select count(*) as n from pgq.tick")).rows[0].n);

beforeAll(async () => {
  db = await createTestDatabase("logdb_ticked");
  logDb = await createTestDatabase("logdb_log");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue('work')");
  await installPgq(logDb.pool);
  await runSqlScript(logDb.pool, join(REPO_ROOT, "sql/logdb/install.sql"));
  metricsPort = await freePort();
  conf = writeTickerConfig(makeTempDir("logdb"), {
    db: db.url,
    natsUrl: natsUrl(),
    subjectPrefix: uniqueSubjectPrefix("logdb"),
    jobName: "logdb_ticker",
    // A stats line every second: records keep coming while the log database is gone.
    extra: { log_db: logDb.url, metrics_port: metricsPort, ticker_log_delay: 1 },
  });
  ticker = startTicker(conf, "logdb-ticker");
  await ticker.waitForLog("active: this instance ticks the database", { timeoutMs: 60_000 });
});

afterAll(async () => {
  await db?.drop();
  await logDb?.drop();
});

describe("log_db", () => {
  it("ships the service's records through the PgQ queue; pgqadm CONF logs shows them", async () => {
    const r = await waitFor(
      async () => {
        const out = await runPgqadm([conf, "logs", "--service", "ticker"]);
        return out.code === 0 && out.stdout.includes("ticker stats") ? out : undefined;
      },
      { timeoutMs: 60_000, what: "pgqadm logs to show the ticker's stats lines" },
    );
    const lines = r.stdout.trim().split("\n");
    expect(lines.find((l) => l.includes("active: this instance ticks the database")), show(r)).toMatch(
      /^\d{4}-\d\d-\d\dT\S+Z {2}INFO {3}ticker {2}logdb_ticker {2}\S+-\d+ {2}active: this instance ticks the database/,
    );
    // They went through the queue: its consumer has taken batches.
    const consumer = await logDb.query("select count(*) as n from logdb.record r where r.ev_id is not null");
    expect(Number(consumer.rows[0].n)).toBeGreaterThan(1);
    expect(await metric("skytools_log_db_shipped_total")).toBeGreaterThan(1);

    // Filters: no warnings so far, nothing from another service, --json gives the records.
    const warn = await runPgqadm([conf, "logs", "--level", "warn"]);
    expect(warn.code, show(warn)).toBe(0);
    expect(warn.stdout).toBe("");
    const other = await runPgqadm([conf, "logs", "--service", "replay", "--since", "1h"]);
    expect(other.stdout, show(other)).toBe("");
    const json = await runPgqadm([conf, "logs", "--json", "--limit", "3", "--since", "1h"]);
    const records = json.stdout.trim().split("\n").map((l) => JSON.parse(l) as { service: string; msg: string });
    expect(records).toHaveLength(3);
    for (const rec of records) expect(rec.service).toBe("ticker");
  });

  it("rejects bad logs options with a usage error", async () => {
    const r = await runPgqadm([conf, "logs", "--level", "loud"]);
    expect(r.code, show(r)).toBe(2);
    expect(r.stderr).toContain("--level loud: use one of trace, debug, info, warn, error, fatal");
    const misplaced = await runPgqadm([conf, "status", "--service", "ticker"]);
    expect(misplaced.code, show(misplaced)).toBe(2);
    expect(misplaced.stderr).toContain('--service applies only to "logs"');
  });

  it("without the log database the service keeps working and counts the records it drops", async () => {
    const droppedBefore = (await metric("skytools_log_db_dropped_total")) ?? 0;
    await logDb.drop();
    // Still ticking: the tick count goes on rising.
    const from = await ticks();
    await waitForProgress({ what: "the ticker to go on ticking", measure: ticks, done: (n) => n >= from + 2 });
    // The stats lines of every second are dropped and counted.
    await waitForProgress({
      what: "skytools_log_db_dropped_total to rise",
      measure: async () => (await metric("skytools_log_db_dropped_total")) ?? 0,
      done: (n) => n >= droppedBefore + 3,
    });
    expect(ticker.running).toBe(true);
    expect(ticker.logs("log_db cannot take log records").length).toBe(1);
    const r = await runPgqadm([conf, "logs"]);
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toContain("pgqadm: logs: cannot read log_db:");
  });
});
