/** The [pgqadm] config section: what the ticker and the pgqadm tool read. */
import { COMMON_KEYS, type CommonSettings, commonSettingsFrom } from "./common-keys.ts";
import { type ConfigSchema, loadConfigFile } from "./load.ts";
import { toPgConfig } from "./dsn.ts";
import type pg from "pg";

export const PGQADM_SCHEMA: ConfigSchema = {
  job_name: { kind: "string", description: "name of this ticker job, its token in NATS subjects (letters, digits, _ and -)", default: "pgqadm" },
  db: { kind: "dsn", description: "the database whose queues are ticked", required: true, secret: true },
  loop_delay: { kind: "number", description: "seconds between tick checks; pgq.tick_if_due() decides per queue whether a tick is due", default: "1.0", min: 0.01 },
  maint_delay: { kind: "number", description: "seconds between maintenance runs (rotation, retry mover, VACUUM of the PgQ tables)", default: "300", min: 1 },
  maint_delay_min: { kind: "number", description: "minutes between maintenance runs (overrides maint_delay)", min: 0.01 },
  queue_refresh_period: {
    kind: "number",
    description: "accepted for Skytools compatibility; the queue list is read at every tick check",
    default: "30",
    min: 0.1,
  },
  ticker_log_delay: { kind: "number", description: "seconds between tick statistics log lines", default: "300", min: 1 },
  standby_delay: { kind: "number", description: "seconds a standby waits between tries to become active", default: "1", min: 0.1 },
  max_queues: {
    kind: "integer",
    description: "most queues the database may hold: `create` of one more is refused (conflict); existing queues are never touched",
    default: "100",
    min: 1,
  },
  ...COMMON_KEYS,
};

export interface TickerConfig extends CommonSettings {
  db: pg.ClientConfig;
  loopDelayMs: number;
  maintDelayMs: number;
  logStatsMs: number;
  standbyDelayMs: number;
  maxQueues: number;
}

export function loadTickerConfig(path: string, env: NodeJS.ProcessEnv = process.env): TickerConfig {
  const v = loadConfigFile(path, "pgqadm", PGQADM_SCHEMA, env);
  const maintSeconds = v.maint_delay_min !== undefined ? (v.maint_delay_min as number) * 60 : (v.maint_delay as number);
  return {
    ...commonSettingsFrom(v, path, "pgqadm"),
    db: toPgConfig(v.db as string),
    loopDelayMs: (v.loop_delay as number) * 1000,
    maintDelayMs: maintSeconds * 1000,
    logStatsMs: (v.ticker_log_delay as number) * 1000,
    standbyDelayMs: (v.standby_delay as number) * 1000,
    maxQueues: v.max_queues as number,
  };
}

/** NATS subjects of one ticker job. */
export function tickerSubjects(prefix: string, job: string) {
  return {
    command: (name: string) => `${prefix}.pgqadm.${job}.${name}`,
    commandPrefix: `${prefix}.pgqadm.${job}`,
  };
}
