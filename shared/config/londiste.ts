/** The [londiste] config section: what replay, copy, repair and the londiste tool read. */
import { resolve } from "node:path";
import type pg from "pg";
import { COMMON_KEYS, type CommonSettings, commonSettingsFrom } from "./common-keys.ts";
import { toPgConfig } from "./dsn.ts";
import { type ConfigSchema, ConfigError, loadConfigFile } from "./load.ts";

export const LONDISTE_SCHEMA: ConfigSchema = {
  job_name: { kind: "string", description: "name of this replication job, its token in NATS subjects (letters, digits, _ and -)", default: "londiste" },
  provider_db: { kind: "dsn", description: "the database whose tables are replicated", required: true, secret: true },
  subscriber_db: { kind: "dsn", description: "the database the changes are applied to", required: true, secret: true },
  pgq_queue_name: { kind: "string", description: "the provider queue carrying the changes", required: true },
  pgq_consumer_id: { kind: "string", description: "PgQ consumer name of replay", default: "%(job_name)s" },
  loop_delay: { kind: "number", description: "seconds between polls when no tick notice arrives", default: "1.0", min: 0.01 },
  on_missing_row: {
    kind: "string",
    description: "an UPDATE/DELETE that finds no row on the subscriber: error (stop the table) or log (count and go on)",
    default: "error",
  },
  ignore_truncate: { kind: "boolean", description: "do not replay TRUNCATE", default: "0" },
  method: { kind: "string", description: "accepted for Skytools compatibility; only direct is supported", default: "direct" },
  parallel_copies: { kind: "number", description: "tables one copy worker copies at the same time", default: "2", min: 1 },
  copy_lease: { kind: "number", description: "seconds a copy worker's claim on a table lasts without a heartbeat", default: "30", min: 2 },
  state_stream_replicas: {
    kind: "integer",
    description: "replicas of the job's state-event stream on JetStream when a service creates it (3 on a NATS cluster of 3 or more nodes)",
    default: "1",
    min: 1,
  },
  repair_dir: {
    kind: "string",
    description: "the only directory (with its subdirectories) a repair worker writes fix files to; relative to its working directory; made when missing",
    default: "londiste-%(job_name)s-repair",
  },
  repair_max_requests: {
    kind: "integer",
    description: "compare/repair requests one repair worker runs at the same time; more are refused (unavailable)",
    default: "4",
    min: 1,
  },
  dashboard_port: { kind: "integer", description: "port of `londiste CONF dashboard` (--port overrides; 0 picks a free one)", default: "8070", min: 0 },
  dashboard_host: { kind: "string", description: "address `londiste CONF dashboard` listens on", default: "127.0.0.1" },
  ...COMMON_KEYS,
};

export interface LondisteConfig extends CommonSettings {
  provider: pg.ClientConfig;
  subscriber: pg.ClientConfig;
  queue: string;
  consumer: string;
  loopDelayMs: number;
  onMissingRow: "error" | "log";
  ignoreTruncate: boolean;
  parallelCopies: number;
  copyLeaseMs: number;
  /** Replicas of the state-event stream when it is created. */
  stateStreamReplicas: number;
  /** Absolute. */
  repairDir: string;
  repairMaxRequests: number;
}

export function loadLondisteConfig(path: string, env: NodeJS.ProcessEnv = process.env): LondisteConfig {
  const v = loadConfigFile(path, "londiste", LONDISTE_SCHEMA, env);
  const common = commonSettingsFrom(v, path, "londiste");
  const onMissingRow = v.on_missing_row as string;
  if (onMissingRow !== "error" && onMissingRow !== "log") {
    throw new ConfigError(`${path}: [londiste] on_missing_row: must be error or log, not "${onMissingRow}"`);
  }
  if (v.method !== "direct") throw new ConfigError(`${path}: [londiste] method: only "direct" is supported`);
  return {
    ...common,
    provider: toPgConfig(v.provider_db as string),
    subscriber: toPgConfig(v.subscriber_db as string),
    queue: v.pgq_queue_name as string,
    consumer: v.pgq_consumer_id as string,
    loopDelayMs: (v.loop_delay as number) * 1000,
    onMissingRow,
    ignoreTruncate: v.ignore_truncate as boolean,
    parallelCopies: Math.floor(v.parallel_copies as number),
    copyLeaseMs: (v.copy_lease as number) * 1000,
    stateStreamReplicas: v.state_stream_replicas as number,
    repairDir: resolve(v.repair_dir as string),
    repairMaxRequests: v.repair_max_requests as number,
  };
}

/**
 * Every command the services of a job serve under its prefix: replay the
 * admin commands, the repair workers compare and repair, every service
 * ping, stop and reload. The londiste tool's command table is the same
 * list. A request under the prefix for anything else gets `unknown_command`.
 */
export const LONDISTE_JOB_COMMANDS: readonly string[] = [
  "provider.install", "provider.add", "provider.remove", "provider.tables", "provider.seqs", "provider.add-seq", "provider.remove-seq",
  "subscriber.install", "subscriber.uninstall", "subscriber.register", "subscriber.unregister", "subscriber.add", "subscriber.remove",
  "subscriber.resync", "subscriber.tables", "subscriber.missing", "subscriber.check", "subscriber.fkeys", "subscriber.seqs",
  "subscriber.add-seq", "subscriber.remove-seq", "subscriber.triggers", "subscriber.trigger", "subscriber.deny-writes",
  "subscriber.allow-writes", "status", "ping", "stop", "reload", "compare", "repair",
];

/**
 * How a job's replay answers requests for commands no service of the job
 * serves (command-service.ts); the copy and repair workers leave that to it.
 */
export function londisteUnknownCommands(job: string) {
  return {
    queue: `londiste-${job}-unknown`,
    known: LONDISTE_JOB_COMMANDS,
    // Published, never requested: copy requests and progress, repair progress, state changes (JetStream).
    notCommands: ["copy.>", "repair.progress", "events.>"],
  };
}

/** NATS subjects of one replication job: admin commands are served by its replay service. */
export function londisteSubjects(prefix: string, job: string) {
  return {
    command: (name: string) => `${prefix}.londiste.${job}.${name}`,
    commandPrefix: `${prefix}.londiste.${job}`,
    /** Wakes the copy workers (queue group `londiste-<job>-copy`): a table waits for a copy. */
    copyRequest: `${prefix}.londiste.${job}.copy.request`,
    /** Copy progress reports, per table: `.copy.progress.<table token>`. */
    copyProgress: (tableToken: string) => `${prefix}.londiste.${job}.copy.progress.${tableToken}`,
    /** JetStream subjects of state changes, per table: `.events.<table token>`. */
    stateEvents: (tableToken: string) => `${prefix}.londiste.${job}.events.${tableToken}`,
  };
}
