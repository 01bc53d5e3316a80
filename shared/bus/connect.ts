/**
 * The one way services connect to NATS: credentials from config, the first
 * connection retried with backoff until it is made (a server that is down,
 * refuses the credentials or is too old is said in the log, with the URL:
 * at once, whenever the reason changes, and every RETRY_LOG_INTERVAL_MS
 * while it lasts; refused credentials are an error an operator must fix,
 * and name the user), then reconnect forever, every status change logged (a
 * subject the server's authorization refuses is named, with the user). A
 * service keeps working on Postgres while NATS is away; only commands and
 * notices wait.
 */
import { readFileSync } from "node:fs";
import {
  type Authenticator,
  AuthorizationError,
  type ConnectionOptions,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
  UserAuthenticationExpiredError,
} from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import type { Logger } from "../log.ts";
import { natsUserLabel, notPermittedMessage, permissionViolation } from "./permissions.ts";
import { sleep } from "../sleep.ts";

/**
 * The oldest NATS server the services work with: JetStream with message
 * de-duplication, and the consumer create API that ordered consumers use.
 */
export const MIN_NATS_SERVER = "2.9.0";
const RETRY_LOG_INTERVAL_MS = 30_000;
/** The longest pause between two attempts at the first connection. */
export const MAX_CONNECT_DELAY_MS = 10_000;

/** The server refused the connection's credentials (user/password, token, nkey, creds), or they expired. */
export function isNatsAuthError(error: unknown): boolean {
  return error instanceof AuthorizationError || error instanceof UserAuthenticationExpiredError;
}

/** Whether server version `v` (e.g. "2.10.4") is at least `min`. */
export function versionAtLeast(v: string, min: string): boolean {
  const a = v.split(/[.-]/).map((x) => Number.parseInt(x, 10));
  const b = min.split(".").map((x) => Number.parseInt(x, 10));
  for (let i = 0; i < b.length; i++) {
    const x = Number.isNaN(a[i]!) ? 0 : (a[i] ?? 0);
    if (x !== b[i]) return x > b[i]!;
  }
  return true;
}

export interface NatsSettings {
  url: string;
  user?: string;
  password?: string;
  token?: string;
  /** Path of a .creds file (JWT + nkey seed). */
  credsFile?: string;
  /** Path of a file holding an nkey seed. */
  nkeySeedFile?: string;
  tlsCaFile?: string;
  tlsCertFile?: string;
  tlsKeyFile?: string;
  /** Connection name shown by the server. */
  name?: string;
  /** First tokens of this connection's reply subjects (default _INBOX). */
  inboxPrefix?: string;
}

export function natsConnectionOptions(settings: NatsSettings): ConnectionOptions {
  const options: ConnectionOptions = {
    servers: settings.url.split(",").map((s) => s.trim()),
    name: settings.name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    reconnectJitter: 500,
    waitOnFirstConnect: true,
  };
  if (settings.user !== undefined) options.user = settings.user;
  if (settings.password !== undefined) options.pass = settings.password;
  if (settings.token !== undefined) options.token = settings.token;
  if (settings.inboxPrefix !== undefined) options.inboxPrefix = settings.inboxPrefix;
  const authenticators: Authenticator[] = [];
  if (settings.credsFile) authenticators.push(credsAuthenticator(readFileSync(settings.credsFile)));
  if (settings.nkeySeedFile) {
    authenticators.push(nkeyAuthenticator(new TextEncoder().encode(readFileSync(settings.nkeySeedFile, "utf8").trim())));
  }
  if (authenticators.length > 0) options.authenticator = authenticators;
  if (settings.tlsCaFile || settings.tlsCertFile || settings.tlsKeyFile) {
    options.tls = {
      caFile: settings.tlsCaFile,
      certFile: settings.tlsCertFile,
      keyFile: settings.tlsKeyFile,
    };
  }
  return options;
}

/**
 * Connects, retrying until it succeeds or `signal` aborts (then it throws),
 * and logs status changes until closed.
 */
export async function connectNats(
  settings: NatsSettings,
  log: Logger,
  signal?: AbortSignal,
  /** Told why each failed attempt failed (readiness shows it). */
  onProblem?: (problem: string) => void,
): Promise<NatsConnection> {
  let delayMs = 1000;
  let loggedAt = 0;
  let lastProblem = "";
  let attempts = 0;
  for (;;) {
    let problem: string;
    let refused = false;
    attempts++;
    try {
      const nc = await connect({ ...natsConnectionOptions(settings), waitOnFirstConnect: false });
      const version = nc.info?.version ?? "unknown";
      if (versionAtLeast(version, MIN_NATS_SERVER)) {
        log.info({ server: nc.getServer(), version }, "connected to NATS");
        void (async () => {
          for await (const status of nc.status()) {
            if (status.type === "ping") continue;
            const violation = status.type === "error" ? permissionViolation(status.error) : undefined;
            if (violation) {
              // A server authorization that lacks a subject this service needs: say which, every time.
              log.error({ nats: "permission" }, `NATS refused: ${notPermittedMessage(violation, natsUserLabel(settings), settings.inboxPrefix)}`);
              continue;
            }
            const level = status.type === "disconnect" || status.type === "error" ? "warn" : "info";
            const problem = status.type === "error" ? status.error.message : undefined;
            log[level]({ nats: status.type, data: "server" in status ? status.server : undefined, problem }, `NATS ${status.type}`);
          }
        })().catch(() => {});
        return nc;
      }
      await nc.close().catch(() => {});
      problem = `the server is NATS ${version}; the services need ${MIN_NATS_SERVER} or newer`;
    } catch (error) {
      problem = (error as Error).message || String(error);
      refused = isNatsAuthError(error);
    }
    if (signal?.aborted) throw new Error(`stopped before NATS at ${settings.url} answered`);
    onProblem?.(problem);
    if (problem !== lastProblem || Date.now() - loggedAt >= RETRY_LOG_INTERVAL_MS) {
      loggedAt = Date.now();
      lastProblem = problem;
      const details = { url: settings.url, attempts, retryInMs: delayMs, nats: refused ? "auth" : "connect" };
      if (refused) {
        // Not a passing outage: the credentials (or the server's authorization) must change. Retried all the same,
        // so that fixing either side is enough.
        log.error(details, `NATS at ${settings.url} refused the credentials (user: ${natsUserLabel(settings)}): ${problem}; retrying until they are accepted`);
      } else {
        log.warn(details, `cannot connect to NATS at ${settings.url}: ${problem}; retrying`);
      }
    }
    await sleep(delayMs, signal);
    if (signal?.aborted) throw new Error(`stopped before NATS at ${settings.url} answered`);
    delayMs = Math.min(delayMs * 2, MAX_CONNECT_DELAY_MS);
  }
}
