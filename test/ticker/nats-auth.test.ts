/**
 * A service whose first NATS connection is refused for its credentials
 * (a private nats-server with authorization on its own port): it says so
 * in its log (an error naming the user), keeps ticking in Postgres, keeps
 * retrying with backoff, and /readyz says 503 with the reason. Once the
 * server accepts the credentials (its config changed and reloaded with
 * SIGHUP, as an operator fixes it), the ticker connects, serves commands
 * and becomes ready, without a restart.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { freePort } from "../support/local-postgres.ts";
import { natsServerBin } from "../support/nats-server.ts";
import { lastTickId, waitForTickAfter } from "../support/pgq-state.ts";
import { runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { makeTempDir, ServiceProcess, SERVICE_START_MS, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";

useProcessCleanup();

let db: TestDatabase;
const Q = "auth_q";

beforeAll(async () => {
  db = await createTestDatabase("ticker_nats_auth");
  await installPgq(db.pool);
  await db.query("select pgq.create_queue($1)", [Q]);
  await db.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.3 seconds')", [Q]);
});

afterAll(async () => {
  await db?.drop();
});

/** The server's config: one user, `password` its password. */
function writeServerConfig(path: string, port: number, dir: string, password: string): void {
  writeFileSync(
    path,
    [
      `listen: 127.0.0.1:${port}`,
      `jetstream { store_dir: "${join(dir, "js")}" }`,
      `authorization { users = [ { user: ticker, password: "${password}" } ] }`,
      "",
    ].join("\n"),
  );
}

async function readyz(port: number): Promise<{ status: number; body: { ready: boolean; checks: Record<string, string> } }> {
  const r = await fetch(`http://127.0.0.1:${port}/readyz`);
  return { status: r.status, body: (await r.json()) as { ready: boolean; checks: Record<string, string> } };
}

describe("NATS refuses the credentials at start-up", () => {
  it("the ticker says so, retries, is not ready, and connects once the server accepts them", async () => {
    const dir = makeTempDir("nats-auth");
    const [natsPort, metricsPort] = [await freePort(), await freePort()];
    const serverConf = join(dir, "nats.conf");
    writeServerConfig(serverConf, natsPort, dir, "the-right-one");
    const nats = new ServiceProcess("nats-auth-server", natsServerBin(), ["-c", serverConf]);
    await waitFor(() => nats.output.includes("Server is ready") || (!nats.running && Promise.reject(new Error(nats.tail()))), {
      timeoutMs: 20_000,
      what: "the private nats-server",
    });

    const conf = writeTickerConfig(dir, {
      db: db.url,
      natsUrl: `nats://127.0.0.1:${natsPort}`,
      subjectPrefix: uniqueSubjectPrefix("auth"),
      extra: { nats_user: "ticker", nats_password: "not-yet-valid", metrics_port: metricsPort },
    });
    const ticker = startTicker(conf);
    const refused = await ticker.waitForLog("refused the credentials", { timeoutMs: SERVICE_START_MS });
    expect(refused).toMatchObject({ level: 50, nats: "auth", url: `nats://127.0.0.1:${natsPort}` });
    expect(refused.msg).toContain("(user: ticker)");
    expect(JSON.stringify(ticker.lines)).not.toContain("not-yet-valid");

    // It retries: the server sees attempt after attempt, with backoff (not a busy loop).
    const attempts = () => (nats.output.match(/authentication error - User "ticker"/g) ?? []).length;
    await waitFor(() => attempts() >= 3, { timeoutMs: 30_000, what: "three refused attempts on the server" });
    // Meanwhile it ticks, and is alive but not ready, saying why.
    const before = await lastTickId(db, Q);
    await db.query("select pgq.insert_event($1, 'x', 'during')", [Q]);
    await waitForTickAfter(db, Q, before, 10_000);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status).toBe(200);
    const notReady = await waitFor(
      async () => {
        const r = await readyz(metricsPort);
        return r.status === 503 && r.body.checks.nats?.includes("Authorization Violation") ? r : undefined;
      },
      { timeoutMs: 20_000, what: "/readyz 503 naming the refusal" },
    );
    expect(notReady.body.checks).toMatchObject({ "database:admin": "ok" });
    expect(ticker.logs("serving admin commands on NATS")).toEqual([]);

    // The operator fixes the server's side: the password the ticker has is now the valid one.
    writeServerConfig(serverConf, natsPort, dir, "not-yet-valid");
    nats.child.kill("SIGHUP");
    await ticker.waitForLog("serving admin commands on NATS", { timeoutMs: 60_000 });
    await waitFor(async () => (await readyz(metricsPort)).status === 200, { timeoutMs: 20_000, what: "/readyz 200" });
    const ping = await runPgqadm([conf, "--json", "ping"]);
    expect(ping.code, show(ping)).toBe(0);
    expect(JSON.parse(ping.stdout)).toMatchObject({ instance: expect.stringMatching(new RegExp(`-${ticker.pid}$`)) });
    expect(ticker.running).toBe(true);
  });
});
