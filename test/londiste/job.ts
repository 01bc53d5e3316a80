/**
 * A whole londiste job for end-to-end tests: a provider and a subscriber
 * database, a ticker process, a [londiste] config, replay processes and
 * the `londiste` command line run as a user runs them. drop() kills the
 * job's processes before it drops the databases.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { createTestDatabase, natsUrl, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { type CliResult, runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";
import { makeTempDir, REPO_ROOT, ServiceProcess } from "../support/processes.ts";

export const LONDISTE_LAUNCHER = join(REPO_ROOT, "services/cli/londiste.js");

export interface LondisteJob {
  provider: TestDatabase;
  subscriber: TestDatabase;
  /** Path of the [londiste] config. */
  conf: string;
  queue: string;
  jobName: string;
  subjectPrefix: string;
  dir: string;
  ticker: ServiceProcess;
  /** Starts `londiste CONF replay [extra...]` as its own process. */
  startReplay(label?: string, extra?: string[]): ServiceProcess;
  /** Starts another ticker on the job's ticker config (after the first was killed). */
  startTicker(label: string): ServiceProcess;
  /** Starts `londiste CONF COMMAND [extra...]` (copy, watch, ...) as its own process. */
  start(label: string, command: string, extra?: string[]): ServiceProcess;
  /** Runs `londiste CONF ARGS...` to completion. */
  londiste(...args: string[]): Promise<CliResult>;
  /** Runs it with --json, expects exit 0, returns the parsed result. */
  londisteJson<T = unknown>(...args: string[]): Promise<T>;
  /** Kills the job's processes (SIGKILL), then drops both databases. */
  drop(): Promise<void>;
}

export interface JobOptions {
  label: string;
  /** Extra `key = value` lines for the [londiste] section. */
  extraConfig?: string[];
  /** ticker_max_lag of the queue is not settable before install: the ticker's loop delay instead. */
  queue?: string;
  /** Maintenance URL of the server to create both databases on (a private cluster); default the shared one. */
  serverUrl?: string;
}

/** Creates the databases and configs and starts the ticker; londiste itself is not installed. */
export async function createLondisteJob(options: JobOptions): Promise<LondisteJob> {
  const provider = await createTestDatabase(`${options.label}_p`, options.serverUrl);
  const subscriber = await createTestDatabase(`${options.label}_s`, options.serverUrl);
  const subjectPrefix = uniqueSubjectPrefix(options.label);
  const dir = makeTempDir(options.label);
  const queue = options.queue ?? "replika";
  const jobName = `${options.label}_job`.replace(/[^A-Za-z0-9_-]/g, "_");
  const tickerConf = writeTickerConfig(dir, { db: provider.url, natsUrl: natsUrl(), subjectPrefix, file: "ticker.ini" });
  const ticker = startTicker(tickerConf, `${options.label}-ticker`);
  const conf = join(dir, "londiste.ini");
  writeFileSync(
    conf,
    [
      "[londiste]",
      `job_name = ${jobName}`,
      `provider_db = ${provider.url}`,
      `subscriber_db = ${subscriber.url}`,
      `pgq_queue_name = ${queue}`,
      `nats_url = ${natsUrl()}`,
      `subject_prefix = ${subjectPrefix}`,
      "loop_delay = 0.2",
      // repair writes fix files only here
      `repair_dir = ${dir}`,
      ...(options.extraConfig ?? []),
      "",
    ].join("\n"),
  );
  const londiste = (...args: string[]) => runPgqadm([conf, ...args], { command: [process.execPath, LONDISTE_LAUNCHER] });
  const processes: ServiceProcess[] = [ticker];
  const start = (label: string, command: string, extra: string[] = []) => {
    const p = new ServiceProcess(label, process.execPath, [LONDISTE_LAUNCHER, conf, command, ...extra]);
    processes.push(p);
    return p;
  };
  return {
    provider,
    subscriber,
    conf,
    queue,
    jobName,
    subjectPrefix,
    dir,
    ticker,
    startReplay: (label = `${options.label}-replay`, extra: string[] = []) => start(label, "replay", extra),
    start,
    startTicker: (label: string) => {
      const p = startTicker(tickerConf, label);
      processes.push(p);
      return p;
    },
    londiste,
    londisteJson: async <T>(...args: string[]) => {
      const r = await londiste("--json", ...args);
      if (r.code !== 0) throw new Error(`londiste ${args.join(" ")} failed: ${show(r)}`);
      return JSON.parse(r.stdout) as T;
    },
    drop: async () => {
      await Promise.all(processes.map((p) => p.kill("SIGKILL")));
      await provider.drop();
      await subscriber.drop();
    },
  };
}

/** Installs both sides through the command line (replay must be running). */
export async function installJob(job: LondisteJob): Promise<void> {
  for (const side of ["provider", "subscriber"]) {
    const r = await job.londiste(side, "install");
    if (r.code !== 0) throw new Error(`${side} install failed: ${show(r)}`);
  }
  // Short ticks keep the tests quick.
  await job.provider.query("select pgq.set_queue_config($1, 'ticker_max_lag', '0.1 seconds')", [job.queue]);
}
