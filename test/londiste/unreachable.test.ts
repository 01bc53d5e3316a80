// A service whose databases and NATS cannot be reached says which (side, host, port; never the
// password), keeps retrying and keeps answering /healthz while /readyz says what is missing; the
// command line exits 3 naming the NATS URL. Nothing listens on the ports used here.
import { writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runPgqadm } from "../support/pgqadm.ts";
import { makeTempDir, ServiceProcess, SERVICE_START_MS, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { LONDISTE_LAUNCHER } from "./job.ts";

useProcessCleanup();

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe("unreachable databases and NATS", () => {
  it("replay names what it cannot reach, retries, stays alive, and is not ready", { timeout: 240_000 }, async () => {
    const dir = makeTempDir("unreachable");
    const [natsPort, pgPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
    const conf = join(dir, "londiste.ini");
    writeFileSync(
      conf,
      [
        "[londiste]",
        "job_name = nowhere",
        `provider_db = host=127.0.0.1 port=${pgPort} dbname=prov user=postgres password=hunter2`,
        `subscriber_db = postgres://postgres:hunter2@127.0.0.1:${pgPort}/subs`,
        "pgq_queue_name = q",
        `nats_url = nats://127.0.0.1:${natsPort}`,
        "command_timeout = 3",
        `metrics_port = ${metricsPort}`,
        "",
      ].join("\n"),
    );
    const replay = new ServiceProcess("unreachable-replay", process.execPath, [LONDISTE_LAUNCHER, conf, "replay"]);
    await replay.waitForLog(`cannot connect to NATS at nats://127.0.0.1:${natsPort}`, { timeoutMs: SERVICE_START_MS });
    const failed = await replay.waitForLog("replay failed; retrying", { timeoutMs: SERVICE_START_MS });
    expect(JSON.stringify(failed)).toContain(`subscriber database at 127.0.0.1:${pgPort}/subs`);
    // It retries rather than exits.
    await replay.waitForLog("replay failed; retrying", { from: replay.lines.indexOf(failed) + 1, timeoutMs: SERVICE_START_MS });
    expect(replay.running).toBe(true);
    expect(replay.output).not.toContain("hunter2");

    expect((await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status).toBe(200);
    const ready = await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
      return r.status === 503 ? ((await r.json()) as { ready: boolean; checks: Record<string, string> }) : undefined;
    }, { what: "/readyz 503", timeoutMs: 30_000 });
    expect(ready.ready).toBe(false);
    expect(ready.checks["database:provider"]).toContain(`provider database at 127.0.0.1:${pgPort}/prov`);
    expect(ready.checks["database:subscriber"]).toContain(`subscriber database at 127.0.0.1:${pgPort}/subs`);
    expect(JSON.stringify(ready)).not.toContain("hunter2");

    const cli = await runPgqadm([conf, "status"], { command: [process.execPath, LONDISTE_LAUNCHER] });
    expect(cli.code).toBe(3);
    expect(cli.stderr).toMatch(new RegExp(`^londiste: cannot connect to NATS at nats://127\\.0\\.0\\.1:${natsPort}`));

    replay.child.kill("SIGTERM");
    expect((await replay.waitForExit(30_000)).code).toBe(0);
  });
});
