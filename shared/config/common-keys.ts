/**
 * Config keys every program understands, besides its own: logging,
 * pidfile, NATS connection and metrics.
 */
import type { NatsSettings } from "../bus/connect.ts";
import { type ConfigSchema, ConfigError, type ConfigValues } from "./load.ts";

export const COMMON_KEYS: ConfigSchema = {
  logfile: { kind: "string", description: "also write JSON log lines to this file" },
  log_db: {
    kind: "dsn",
    description:
      "also ship log records to this log database (sql/logdb/install.sql) through its PgQ queue logdb; while it cannot take them they are dropped and counted, the service goes on",
    secret: true,
  },
  pidfile: { kind: "string", description: "write the process id here while running" },
  log_level: { kind: "string", description: "trace, debug, info, warn or error", default: "info" },
  use_skylog: { kind: "boolean", description: "accepted for Skytools compatibility; has no effect", default: "0" },
  connection_lifetime: {
    kind: "number",
    description: "accepted for Skytools compatibility; connections are kept and re-opened only when they fail",
    default: "1200",
  },
  nats_url: { kind: "string", description: "NATS server URL(s), comma-separated", default: "nats://127.0.0.1:4222" },
  nats_user: { kind: "string", description: "NATS user name" },
  nats_password: { kind: "string", description: "NATS password", secret: true },
  nats_token: { kind: "string", description: "NATS token", secret: true },
  nats_creds: { kind: "string", description: "path of a NATS .creds file" },
  nats_nkey_seed: { kind: "string", description: "path of a file with an nkey seed" },
  nats_tls_ca: { kind: "string", description: "CA certificate file for NATS TLS" },
  nats_tls_cert: { kind: "string", description: "client certificate file for NATS TLS" },
  nats_tls_key: { kind: "string", description: "client key file for NATS TLS" },
  nats_inbox_prefix: {
    kind: "string",
    description: "first tokens of the subjects replies come back on (default _INBOX); with the sample NATS authorization, _INBOX.<nats_user>",
  },
  subject_prefix: { kind: "string", description: "first token(s) of every NATS subject", default: "skytools" },
  metrics_port: { kind: "integer", description: "serve /metrics, /healthz and /readyz on this port (off when unset)", min: 1 },
  metrics_host: { kind: "string", description: "address the metrics and health endpoints listen on", default: "127.0.0.1" },
  command_timeout: { kind: "number", description: "seconds a command-line tool waits for a service reply", default: "10", min: 0.1 },
};

const str = (v: unknown) => (typeof v === "string" ? v : undefined);

export function natsSettingsFrom(values: ConfigValues, name: string): NatsSettings {
  return {
    url: str(values.nats_url) ?? "nats://127.0.0.1:4222",
    user: str(values.nats_user),
    password: str(values.nats_password),
    token: str(values.nats_token),
    credsFile: str(values.nats_creds),
    nkeySeedFile: str(values.nats_nkey_seed),
    tlsCaFile: str(values.nats_tls_ca),
    tlsCertFile: str(values.nats_tls_cert),
    tlsKeyFile: str(values.nats_tls_key),
    inboxPrefix: str(values.nats_inbox_prefix),
    name,
  };
}

/** A NATS subject token from a free-form name (queue names may hold dots or spaces). */
export function subjectToken(name: string): string {
  const token = name.replace(/[^A-Za-z0-9_-]/g, "_");
  return token === "" ? "_" : token;
}

/** Checks a job name can be used as one subject token as it is. */
export function checkJobName(job: string): string | undefined {
  return /^[A-Za-z0-9_-]+$/.test(job) ? undefined : `job_name "${job}" may contain only letters, digits, _ and -`;
}

/** What every program takes from the common keys, plus its checked job name. */
export interface CommonSettings {
  jobName: string;
  subjectPrefix: string;
  commandTimeoutMs: number;
  metricsPort: number | undefined;
  metricsHost: string;
  logLevel: string;
  logfile: string | undefined;
  /** The log database's connection string (`log_db`), if any. */
  logDb: string | undefined;
  pidfile: string | undefined;
  values: ConfigValues;
}

export function commonSettingsFrom(values: ConfigValues, path: string, section: string): CommonSettings {
  const jobName = values.job_name as string;
  const problem = checkJobName(jobName);
  if (problem) throw new ConfigError(`${path}: [${section}] job_name: ${problem}`);
  return {
    jobName,
    subjectPrefix: values.subject_prefix as string,
    commandTimeoutMs: (values.command_timeout as number) * 1000,
    metricsPort: values.metrics_port as number | undefined,
    metricsHost: values.metrics_host as string,
    logLevel: values.log_level as string,
    logfile: values.logfile as string | undefined,
    logDb: values.log_db as string | undefined,
    pidfile: values.pidfile as string | undefined,
    values,
  };
}
