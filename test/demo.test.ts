/**
 * `npm run demo` as a user runs it (a child process), against the test
 * servers: every table reaches ok, both sides compare equal, the dashboard
 * prints its URL, and nothing is left behind (databases, JetStream stream, temp dir).
 */
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { expect, it } from "vitest";
// The type import also brings the demo's sources into `tsc -p .` (scripts/ is not in tsconfig's include).
import type { DemoExitCode } from "../scripts/demo.ts";
import { REPO_ROOT } from "../scripts/demo/processes.ts";
import { SEQUENCES, TABLES } from "../scripts/demo/sample.ts";
import { stateStreamName } from "../shared/londiste/state-events.ts";
import { adminQuery, databaseUrl, natsUrl } from "./support/db.ts";
import { recordChild } from "./support/processes.ts";
import { MachineClock, sleep } from "./support/wait.ts";

/** The demo narrates as it goes: this long (machine time) without a line means it hangs. */
const SILENCE_MS = 120_000;

/**
 * Runs the demo to its end. A demo that prints nothing for SILENCE_MS gets SIGINT (it cleans
 * up what it started), and SIGKILL 30 s later; the test then fails on its exit code.
 */
async function runDemo(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  const { DEMO_KEEP: _keep, ...inherited } = process.env;
  const child = spawn(process.execPath, ["--import", "tsx", "scripts/demo.ts"], {
    cwd: REPO_ROOT,
    env: { ...inherited, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  recordChild(child, "demo");
  let output = "";
  let quiet = new MachineClock();
  const heard = (c: string) => {
    output += c;
    quiet = new MachineClock();
  };
  child.stdout.setEncoding("utf8").on("data", heard);
  child.stderr.setEncoding("utf8").on("data", heard);
  let code: number | null | undefined;
  const closed = new Promise<void>((resolve) =>
    child.once("close", (c) => {
      code = c;
      resolve();
    }),
  );
  try {
    let interrupted: MachineClock | undefined;
    while (code === undefined) {
      await Promise.race([closed, sleep(200)]);
      if (code !== undefined) break;
      if (!interrupted && quiet.elapsed() > SILENCE_MS) {
        output += `\n[test] no output for ${quiet.describe()}: SIGINT\n`;
        child.kill("SIGINT");
        interrupted = new MachineClock();
      } else if (interrupted && interrupted.elapsed() > 30_000) {
        child.kill("SIGKILL");
      }
    }
  } finally {
    if (code === undefined) child.kill("SIGKILL");
  }
  return { code, output };
}

// The demo's own limit for the tables to reach ok is raised (DEMO_TIMEOUT): a busy machine is slow, not broken.
it("npm run demo: every table reaches ok, both sides are equal, nothing is left behind", { timeout: 900_000 }, async () => {
  const { code, output } = await runDemo({ DATABASE_URL: databaseUrl(), NATS_URL: natsUrl(), DEMO_ORDERS: "300000", DEMO_TIMEOUT: "600" });
  const expected: DemoExitCode = 0;
  expect(code, output).toBe(expected);

  for (const table of TABLES) {
    expect(output, `${table} reached ok`).toMatch(new RegExp(`${table.replace(".", "\\.")}: do-sync:\\d+ → ok`));
    expect(output, `${table} equal`).toMatch(new RegExp(`${table.replace(".", "\\.")}: [\\d,]+ rows, checksum -?\\d+ on both sides: equal`));
  }
  for (const seq of SEQUENCES) expect(output).toMatch(new RegExp(`sequence ${seq.replace(".", "\\.")}: \\d+ on both sides: equal`));
  expect(output).toContain("copied 300,");
  expect(output).toContain("is back on the subscriber");
  expect(output).not.toContain("NOT EQUAL");
  // The dashboard ran beside the services and said where.
  expect(output).toMatch(/Open the dashboard while the demo runs: http:\/\/127\.0\.0\.1:\d+\//);

  // Nothing left: the demo's databases, its JetStream stream, its temp dir.
  const names = /Creating the databases: (demo_([0-9a-f]+)_provider) \(provider\), (demo_[0-9a-f]+_subscriber) \(subscriber\)/.exec(output);
  expect(names, output).not.toBeNull();
  const { rows } = await adminQuery<{ datname: string }>("select datname from pg_database where datname like $1", [`demo\\_${names![2]}\\_%`]);
  expect(rows).toEqual([]);

  const nc = await connect({ servers: natsUrl() });
  try {
    const jsm = await jetstreamManager(nc);
    await expect(jsm.streams.info(stateStreamName(`demo_${names![2]}`, "shop"))).rejects.toThrow();
  } finally {
    await nc.close();
  }

  const dir = /DEMO=(\S+)/.exec(output)?.[1];
  expect(dir).toBeDefined();
  expect(existsSync(dir!)).toBe(false);
});
