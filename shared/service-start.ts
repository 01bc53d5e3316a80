/**
 * The first steps every long-running service takes: load its config (a bad
 * one is one line on stderr and exit code 2), create its logger, claim its
 * pidfile (a live holder is exit code 1).
 */
import type { CommonSettings } from "./config/common-keys.ts";
import { ConfigError } from "./config/load.ts";
import { createLogger, type Logger } from "./log.ts";
import { claimPidfile } from "./pidfile.ts";

export interface StartedService<C> {
  config: C;
  log: Logger;
  releasePidfile: () => void;
}

export function startService<C extends CommonSettings>(
  service: string,
  load: () => C,
): StartedService<C> | { exitCode: number } {
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
  const log = createLogger({ service, job: config.jobName, level: config.logLevel, file: config.logfile });
  try {
    const releasePidfile = config.pidfile ? claimPidfile(config.pidfile) : () => {};
    return { config, log, releasePidfile };
  } catch (error) {
    log.error((error as Error).message);
    return { exitCode: 1 };
  }
}
