/**
 * The one way services connect to NATS: credentials from config, reconnect
 * forever with backoff, every status change logged. A service keeps
 * working on Postgres while NATS is away; only commands and notices wait.
 */
import { readFileSync } from "node:fs";
import {
  type Authenticator,
  type ConnectionOptions,
  credsAuthenticator,
  type NatsConnection,
  nkeyAuthenticator,
} from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import type { Logger } from "../log.ts";

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

/** Connects (waiting for the server if it is not up yet) and logs status changes until closed. */
export async function connectNats(settings: NatsSettings, log: Logger): Promise<NatsConnection> {
  const nc = await connect(natsConnectionOptions(settings));
  log.info({ server: nc.getServer() }, "connected to NATS");
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === "ping") continue;
      const level = status.type === "disconnect" || status.type === "error" ? "warn" : "info";
      log[level]({ nats: status.type, data: "server" in status ? status.server : undefined }, `NATS ${status.type}`);
    }
  })().catch(() => {});
  return nc;
}
