/**
 * One pino logger per service: JSON lines on stdout (pretty when stdout is
 * a terminal), with `service`, `job`, `host` and `pid` on every line. Connection
 * strings and passwords are redacted wherever they appear in logged
 * objects.
 */
import { hostname } from "node:os";
import pino from "pino";
import pinoPretty from "pino-pretty";
import { redactDsn } from "./config/dsn.ts";

export type Logger = pino.Logger;

export interface LoggerOptions {
  service: string;
  job: string;
  level?: string;
  /** Force pretty (true) or JSON (false); default: pretty on a terminal. */
  pretty?: boolean;
  /** Write here instead of stdout (tests). */
  destination?: pino.DestinationStream;
  /** Also append JSON lines to this file (Skytools `logfile`); written synchronously, so an early exit loses nothing. */
  file?: string;
  /** Also hand every JSON line to this stream (the log_db shipper, shared/logdb/shipper.ts). */
  ship?: { write(line: string): void };
}

const SECRET_PATHS = [
  "password",
  "*.password",
  "*.*.password",
  "pass",
  "*.pass",
  "token",
  "*.token",
  "nkey",
  "*.nkey",
  "connectionString",
  "*.connectionString",
  // a pg config's TLS settings may hold a client key
  "ssl",
  "*.ssl",
];

export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.pretty ?? (process.stdout.isTTY === true && options.destination === undefined);
  const base = { service: options.service, job: options.job, host: hostname(), pid: process.pid };
  const config: pino.LoggerOptions = {
    level: options.level ?? process.env.LOG_LEVEL ?? "info",
    base,
    redact: { paths: SECRET_PATHS, censor: "***" },
    serializers: { err: serializeError },
    formatters: {
      log: (object) => redactStrings(object) as Record<string, unknown>,
    },
  };
  if (options.destination) return pino(config, options.destination);
  if (options.ship) {
    // The terminal gets the pretty form, the file and the log database the JSON line.
    const screen = pretty ? pinoPretty({ colorize: true }) : process.stdout;
    const streams: pino.StreamEntry[] = [{ stream: screen }, { stream: options.ship }];
    if (options.file) streams.push({ stream: pino.destination({ dest: options.file, append: true, mkdir: true, sync: true }) });
    return pino(config, pino.multistream(streams));
  }
  if (options.file) {
    return pino(
      config,
      pino.multistream([{ stream: process.stdout }, { stream: pino.destination({ dest: options.file, append: true, mkdir: true, sync: true }) }]),
    );
  }
  if (pretty) return pino({ ...config, transport: { target: "pino-pretty", options: { colorize: true } } });
  return pino(config);
}

/**
 * pino's error serializer, without repeating a message: it joins the
 * messages of the cause chain, and an error that wraps another with the
 * same text (a PgqError around the database error) read "X: X".
 */
function serializeError(error: unknown): unknown {
  const out = pino.stdSerializers.err(error as Error);
  if (!(error instanceof Error) || typeof out !== "object" || out === null) return out;
  const messages: string[] = [];
  const seen = new Set<unknown>();
  for (let e: unknown = error; e instanceof Error && !seen.has(e); e = e.cause) {
    seen.add(e);
    if (e.message !== "" && e.message !== messages.at(-1)) messages.push(e.message);
  }
  (out as { message: string }).message = messages.join(": ");
  return out;
}

/** Masks passwords inside connection strings found in string values (one level deep is enough for our log calls). */
function redactStrings(object: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(object)) {
    out[key] = typeof value === "string" && /password|:\/\/[^@\s]*:[^@\s]*@/i.test(value) ? redactDsn(value) : value;
  }
  return out;
}
