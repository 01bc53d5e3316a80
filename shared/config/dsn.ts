/**
 * Database connection strings as Skytools configs write them — libpq
 * keyword form (`dbname=provider host=127.0.0.1 port=5432`) — or as URLs
 * (`postgres://user@host:5432/db`), turned into a pg client config.
 */
import { readFileSync } from "node:fs";
import type { ConnectionOptions } from "node:tls";
import type pg from "pg";
import { settingsNamed, startupOptions } from "../db/value-text.ts";

export class DsnError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DsnError";
  }
}

const KEYWORDS = new Set([
  "host",
  "hostaddr",
  "port",
  "dbname",
  "user",
  "password",
  "sslmode",
  "application_name",
  "connect_timeout",
  "options",
  "sslrootcert",
  "sslcert",
  "sslkey",
]);

/** Parses `key=value key2='quoted value'` (libpq rules: single quotes, backslash escapes). */
export function parseKeywordDsn(dsn: string): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  const skipSpace = () => {
    while (i < dsn.length && /\s/.test(dsn[i]!)) i++;
  };
  for (;;) {
    skipSpace();
    if (i >= dsn.length) break;
    const keyStart = i;
    while (i < dsn.length && /[A-Za-z0-9_]/.test(dsn[i]!)) i++;
    const key = dsn.slice(keyStart, i);
    skipSpace();
    if (!key || dsn[i] !== "=") throw new DsnError(`connection string: expected key=value at "${dsn.slice(keyStart, keyStart + 20)}"`);
    i++;
    skipSpace();
    let value = "";
    if (dsn[i] === "'") {
      i++;
      for (;;) {
        if (i >= dsn.length) throw new DsnError(`connection string: unterminated quoted value for ${key}`);
        const ch = dsn[i++]!;
        if (ch === "'") break;
        value += ch === "\\" && i < dsn.length ? dsn[i++]! : ch;
      }
    } else {
      while (i < dsn.length && !/\s/.test(dsn[i]!)) {
        const ch = dsn[i++]!;
        value += ch === "\\" && i < dsn.length ? dsn[i++]! : ch;
      }
    }
    if (!KEYWORDS.has(key)) throw new DsnError(`connection string: unknown keyword ${key}`);
    out.set(key, value);
  }
  return out;
}

/**
 * Settings every service session runs with, whatever the database or role
 * defaults say: the driver parses dates and intervals only in these styles
 * (with DateStyle SQL or German a timestamptz comes back as null), and
 * array parameters carry NULL elements as NULL only with array_nulls on.
 * They come after the user's own `options`, so they win.
 */
export const PINNED_SESSION_OPTIONS = startupOptions(settingsNamed("DateStyle", "IntervalStyle", "array_nulls"));

function withPinnedOptions(options: string | null | undefined): string {
  return options ? `${options} ${PINNED_SESSION_OPTIONS}` : PINNED_SESSION_OPTIONS;
}

/** A pg client config from either form. */
export function toPgConfig(dsn: string): pg.ClientConfig {
  const text = dsn.trim();
  if (text === "") throw new DsnError("connection string is empty");
  if (/^postgres(ql)?:\/\//.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new DsnError("connection string: not a valid URL");
    }
    // The URL's own options would replace the merged ones: move them out of it.
    const own = url.searchParams.get("options");
    if (own === null) return { connectionString: text, options: PINNED_SESSION_OPTIONS };
    url.searchParams.delete("options");
    return { connectionString: url.toString(), options: withPinnedOptions(own) };
  }
  const kv = parseKeywordDsn(text);
  const config: pg.ClientConfig = {};
  const host = kv.get("hostaddr") ?? kv.get("host");
  if (host !== undefined) config.host = host;
  if (kv.has("port")) {
    const port = Number(kv.get("port"));
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new DsnError(`connection string: bad port ${kv.get("port")}`);
    config.port = port;
  }
  if (kv.has("dbname")) config.database = kv.get("dbname")!;
  if (kv.has("user")) config.user = kv.get("user")!;
  if (kv.has("password")) config.password = kv.get("password")!;
  if (kv.has("application_name")) config.application_name = kv.get("application_name")!;
  if (kv.has("connect_timeout")) config.connectionTimeoutMillis = Number(kv.get("connect_timeout")) * 1000;
  config.options = withPinnedOptions(kv.get("options"));
  const ssl = sslFrom(kv);
  if (ssl !== undefined) config.ssl = ssl;
  return config;
}

/**
 * TLS settings of a keyword connection string, as libpq reads sslmode:
 * require encrypts without checking the server (unless sslrootcert is
 * given: then as verify-ca), verify-ca checks the certificate against
 * sslrootcert (or the system's CAs), verify-full also the host name.
 * sslcert/sslkey are a client certificate. Files are read here, so a
 * missing one is a config error naming it.
 */
function sslFrom(kv: Map<string, string>): pg.ClientConfig["ssl"] {
  const mode = kv.get("sslmode");
  if (mode === undefined || mode === "disable" || mode === "allow" || mode === "prefer") return undefined;
  if (mode !== "require" && mode !== "verify-ca" && mode !== "verify-full") {
    throw new DsnError(`connection string: sslmode must be disable, allow, prefer, require, verify-ca or verify-full, not "${mode}"`);
  }
  const file = (key: string) => {
    const path = kv.get(key);
    if (!path) return undefined;
    try {
      return readFileSync(path, "utf8");
    } catch (error) {
      throw new DsnError(`connection string: ${key}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
    }
  };
  const ssl: ConnectionOptions = {};
  const ca = file("sslrootcert");
  const cert = file("sslcert");
  const key = file("sslkey");
  if (ca !== undefined) ssl.ca = ca;
  if (cert !== undefined) ssl.cert = cert;
  if (key !== undefined) ssl.key = key;
  if (mode === "require" && ca === undefined) ssl.rejectUnauthorized = false;
  else if (mode !== "verify-full") ssl.checkServerIdentity = () => undefined;
  return ssl;
}

/** The connection string with any password replaced, for logs. */
export function redactDsn(dsn: string): string {
  return dsn
    .replace(/(postgres(?:ql)?:\/\/[^:/@]*:)[^@]*@/, "$1***@")
    .replace(/(password\s*=\s*)('(?:\\.|[^'])*'|\S+)/gi, "$1***");
}
