/**
 * The ticker and the pgqadm command line as a user runs them (the launcher
 * services/cli/pgqadm.js): a [pgqadm] config with fast test timings, the ticker as its own
 * process, one-shot commands with their exit code and output, and the checks of that output.
 *
 *   const conf = writeTickerConfig(dir, { db: db.url, natsUrl: natsUrl(), subjectPrefix });
 *   const ticker = startTicker(conf, "a");
 *   expectOk(await runPgqadm([conf, "--json", "status"]));
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { recordChild, REPO_ROOT, ServiceProcess } from "./processes.ts";

export const PGQADM_LAUNCHER = join(REPO_ROOT, "services/cli/pgqadm.js");

export interface TickerConfigOptions {
  db: string;
  natsUrl: string;
  subjectPrefix: string;
  jobName?: string;
  /** More [pgqadm] keys (or overrides of the suggested defaults). */
  extra?: Record<string, string | number>;
  /** File name inside dir (default conf.ini). */
  file?: string;
}

/** Writes a [pgqadm] config file with fast test timings; returns its path. */
export function writeTickerConfig(dir: string, options: TickerConfigOptions): string {
  const keys: Record<string, string | number> = {
    job_name: options.jobName ?? "ticktest",
    db: options.db,
    nats_url: options.natsUrl,
    subject_prefix: options.subjectPrefix,
    loop_delay: 0.1,
    maint_delay: 2,
    standby_delay: 0.2,
    command_timeout: 5,
    ...options.extra,
  };
  const path = join(dir, options.file ?? "conf.ini");
  const body = Object.entries(keys)
    .map(([k, v]) => `${k} = ${v}`)
    .join("\n");
  writeFileSync(path, `# written by test/support/pgqadm.ts\n[pgqadm]\n${body}\n`);
  return path;
}

/** Starts `node services/cli/pgqadm.js CONFIG ticker` (pretty logging off: stdout is a pipe, so JSON lines). */
export function startTicker(configPath: string, label = "ticker"): ServiceProcess {
  return new ServiceProcess(label, process.execPath, [PGQADM_LAUNCHER, configPath, "ticker"]);
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `node services/cli/pgqadm.js ARGS...` (or `options.command` ARGS...) to completion and
 * returns its exit code and output. `timeoutMs` (default 120 s) only stops a command that hangs.
 */
export function runPgqadm(args: string[], options: { timeoutMs?: number; command?: string[] } = {}): Promise<CliResult> {
  const [cmd, ...pre] = options.command ?? [process.execPath, PGQADM_LAUNCHER];
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd!,
      [...pre, ...args],
      { cwd: REPO_ROOT, timeout: options.timeoutMs ?? 120_000, killSignal: "SIGKILL", encoding: "utf8" },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== "number") {
          reject(new Error(`${cmd === process.execPath ? (pre[0] ?? cmd) : cmd} ${args.join(" ")} did not finish (${error.message}); stdout:\n${stdout}\nstderr:\n${stderr}`));
          return;
        }
        resolve({ code: error ? (error.code as number) : 0, stdout, stderr });
      },
    );
    recordChild(child, `cli ${args.slice(1, 3).join(" ")}`);
  });
}

/** Describes a CLI result for assertion messages. */
export function show(r: CliResult): string {
  return `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
}

/** Expects exit 0 and nothing on stderr; returns stdout. */
export function expectOk(r: CliResult): string {
  expect(r.code, show(r)).toBe(0);
  expect(r.stderr, show(r)).toBe("");
  return r.stdout;
}

/** Expects exit 1 with `pgqadm: COMMAND failed (CODE): MESSAGE` on stderr; returns MESSAGE. */
export function expectFailed(r: CliResult, command: string, code: string): string {
  expect(r.code, show(r)).toBe(1);
  const m = new RegExp(`^pgqadm: ${command} failed \\(${code}\\): (.+)$`, "m").exec(r.stderr);
  expect(m, show(r)).not.toBeNull();
  return m![1]!;
}

/** Expects the --json form of an error reply: exit 1, `{"error":{"code":CODE,...}}` on stdout; returns the message. */
export function expectJsonError(r: CliResult, code: string): string {
  expect(r.code, show(r)).toBe(1);
  const reply = JSON.parse(r.stdout) as { error: { code: string; message: string } };
  expect(reply.error.code, show(r)).toBe(code);
  return reply.error.message;
}

/** Runs pgqadm with --json, expects exit 0, returns the parsed result. */
export async function pgqadmJson<T = Record<string, unknown>>(config: string, ...words: string[]): Promise<T> {
  const r = await runPgqadm([config, "--json", ...words]);
  if (r.code !== 0) throw new Error(`pgqadm ${words.join(" ")} failed: ${show(r)}`);
  return JSON.parse(r.stdout) as T;
}
