/**
 * The first steps every long-running service takes: load its config (a bad
 * one is one line on stderr and exit code 2), claim its pidfile (a live
 * holder is one line on stderr and exit code 1), create its logger.
 *
 * Several kinds of service run from one Skytools-style config, and several
 * workers of a kind may run on one host: each gets its own pidfile and
 * logfile, derived from the configured ones by a suffix (`.copy`,
 * `.repair`, then `.<instance name>`), as Skytools 2 did with `.copy`.
 */
import type { CommonSettings } from "./config/common-keys.ts";
import { ConfigError } from "./config/load.ts";
import { createLogger, type Logger } from "./log.ts";
import { LogDbShipper } from "./logdb/shipper.ts";
import { claimPidfile } from "./pidfile.ts";

export interface StartedService<C> {
  config: C;
  log: Logger;
  releasePidfile: () => void;
  /** Ships the log records to `log_db`, when set. */
  shipper: LogDbShipper | undefined;
}

export interface StartOptions {
  /** Appended to the configured pidfile and logfile, e.g. ".copy". */
  fileSuffix?: string;
  /** Tells workers of one kind on one host apart: appended after fileSuffix. */
  instanceName?: string;
}

const INSTANCE_NAME = /^[A-Za-z0-9_-]{1,40}$/;

/** The pidfile or logfile of one service instance, derived from the configured path. */
export function derivedPath(path: string | undefined, options: StartOptions): string | undefined {
  if (path === undefined) return undefined;
  return `${path}${options.fileSuffix ?? ""}${options.instanceName ? `.${options.instanceName}` : ""}`;
}

export function startService<C extends CommonSettings>(
  service: string,
  load: () => C,
  options: StartOptions = {},
): StartedService<C> | { exitCode: number } {
  if (options.instanceName !== undefined && !INSTANCE_NAME.test(options.instanceName)) {
    process.stderr.write(`--instance ${JSON.stringify(options.instanceName)}: use 1 to 40 letters, digits, _ or -\n`);
    return { exitCode: 2 };
  }
  let config: C;
  try {
    config = load();
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      return { exitCode: 2 };
    }
    throw error;
  }
  const pidfile = derivedPath(config.pidfile, options);
  let releasePidfile = () => {};
  try {
    if (pidfile) releasePidfile = claimPidfile(pidfile);
  } catch (error) {
    // Before the logger exists: an early exit is one line, never a stack trace.
    process.stderr.write(`${service}: ${(error as Error).message}\n`);
    return { exitCode: 1 };
  }
  // The shipper is made before the logger it reports through.
  const logger: { log?: Logger } = {};
  const shipper =
    config.logDb === undefined
      ? undefined
      : new LogDbShipper(config.logDb, service, config.jobName, (problem) => {
          // Said once when it stops working and once when it works again, not per record.
          if (problem.kind === "down") logger.log?.warn({ reason: problem.message, dropped: problem.dropped }, "log_db cannot take log records: dropping them until it can");
          else logger.log?.info({ dropped: problem.dropped }, "log_db takes log records again");
        });
  const log = createLogger({ service, job: config.jobName, level: config.logLevel, file: derivedPath(config.logfile, options), ship: shipper });
  logger.log = log;
  return { config, log, releasePidfile, shipper };
}
