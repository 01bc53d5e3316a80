/**
 * `npm run demo` as a user runs it (a child process), against the test
 * servers: every table reaches ok, both sides compare equal, and nothing
 * is left behind (databases, JetStream stream, temp dir).
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

function runDemo(env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const { DEMO_KEEP: _keep, ...inherited } = process.env;
    const child = spawn(process.execPath, ["--import", "tsx", "scripts/demo.ts"], {
      cwd: REPO_ROOT,
      env: { ...inherited, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.setEncoding("utf8").on("data", (c: string) => (output += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (output += c));
    // Far beyond the demo's own 2-minute limit: the demo must end by itself.
    const timer = setTimeout(() => child.kill("SIGINT"), 150_000);
    child.once("close", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

it("npm run demo: every table reaches ok, both sides are equal, nothing is left behind", { timeout: 180_000 }, async () => {
  const { code, output } = await runDemo({ DATABASE_URL: databaseUrl(), NATS_URL: natsUrl(), DEMO_ORDERS: "300000" });
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
