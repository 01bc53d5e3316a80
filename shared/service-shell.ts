/**
 * The shell every long-running service runs in, so that each `main.ts`
 * holds only what is its own: the config and logger (service-start.ts),
 * an instance id, database pools that log their connection errors (idle
 * or checked out) instead of crashing the process, the NATS connection made in the
 * background (a service starts its database work without waiting for
 * NATS), the stop signal for SIGINT/SIGTERM, SIGHUP for reload, the
 * metrics registry with /metrics, /healthz and /readyz on metrics_port
 * (readiness: every database of the service answers, and NATS is
 * connected where the service needs it), and the clean-up in reverse order
 * of set-up: NATS drained, pools ended, the pidfile released, whatever the
 * body did.
 */
import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import pg from "pg";
import { Gauge, type Registry } from "prom-client";
import { type CommandSpec, NO_REPLY } from "./bus/command-service.ts";
import { connectNats, MAX_CONNECT_DELAY_MS } from "./bus/connect.ts";
import { CommandError } from "./bus/replies.ts";
import { type CommonSettings, natsSettingsFrom } from "./config/common-keys.ts";
import type { Logger } from "./log.ts";
import { handlePoolErrors } from "./db/pool-errors.ts";
import { clientNaming } from "./db/where.ts";
import { sleep } from "./sleep.ts";
import { createRegistry, type MetricsEndpoint, serveMetrics } from "./metrics.ts";
import { type StartOptions, startService } from "./service-start.ts";
import { VERSION } from "./version.ts";

export interface ServiceShell<C extends CommonSettings> {
  readonly config: C;
  readonly log: Logger;
  /** Stable for the life of the process: `<host>-<pid>`. */
  readonly instance: string;
  /** Aborted on SIGINT/SIGTERM or requestStop(). */
  readonly stopSignal: AbortSignal;
  requestStop(reason: string): void;
  /** A pool whose connection errors, idle or checked out, are logged (an unhandled one would end the process); ended at exit. */
  pool(side: string, config: pg.PoolConfig): pg.Pool;
  /** The NATS connection once made (see connectNatsInBackground), else undefined. */
  readonly nats: NatsConnection | undefined;
  /**
   * Connects to NATS without blocking the caller, then runs `onConnected`;
   * the connection is drained at exit. `withoutNats` says in the log what
   * the service does while it has no NATS.
   */
  connectNatsInBackground(connectionName: string, onConnected: (nc: NatsConnection) => Promise<void> | void, withoutNats: string): void;
  /** Connects to NATS and waits for it (for services that serve only over NATS). */
  connectNatsNow(connectionName: string): Promise<NatsConnection>;
  /** Runs at exit, before the NATS drain and the pools' end, in reverse order of registration. */
  atExit(cleanup: () => Promise<unknown> | unknown): void;
  /** Runs after a reload has replaced the config's values (SIGHUP or the reload command). */
  onReload(apply: (config: C) => void): void;
  /**
   * Re-reads the config file into `config` (in place, so every reader sees
   * the new values); returns the problem when the file is not usable, and
   * the old config stays. Keys that only a restart applies are named in
   * the log.
   */
  reloadConfig(): string | undefined;
  /** stop, reload and ping for the service's NATS command set (every instance receives them). */
  controlCommands(state: () => Record<string, unknown>): Record<string, CommandSpec>;
  /** The service's Prometheus registry, served on metrics_port. */
  readonly metrics: Registry;
}

/** Keys read once at start (connections, names, files): a reload says they need a restart. */
const RESTART_KEYS = /(^|_)db$|^(job_name|queue_name|pgq_queue_name|subject_prefix|pidfile|logfile|metrics_port|metrics_host)$|^nats_/;

/** How often a service started by npx checks that npx is still there. */
const PARENT_CHECK_MS = 500;

/** How long a readiness probe waits for a database. */
const READY_PROBE_TIMEOUT_MS = 3000;

export interface ServiceSpec<C extends CommonSettings> {
  /** Logger name: ticker, replay, copy, repair. */
  kind: string;
  load: () => C;
  /** What the service does when asked to stop, for the log line. */
  stopping: string;
  body: (shell: ServiceShell<C>) => Promise<number | void>;
  /** The last log line's details. */
  summary?: () => Record<string, unknown>;
  /** Not ready without NATS (a service that serves only over NATS). */
  needsNats?: boolean;
  /** Pidfile/logfile suffix and instance name (see service-start.ts). */
  files?: StartOptions;
}

/** Runs a service in its shell; resolves to the process exit code. */
export async function runService<C extends CommonSettings>(spec: ServiceSpec<C>): Promise<number> {
  const started = startService(spec.kind, spec.load, spec.files);
  if ("exitCode" in started) return started.exitCode;
  const { config, log, releasePidfile, shipper } = started;

  const stop = new AbortController();
  const pools: { side: string; config: pg.PoolConfig; pool: pg.Pool }[] = [];
  const registry = createRegistry(spec.kind, config.jobName);
  if (shipper) {
    registry.registerMetric(shipper.dropped);
    registry.registerMetric(shipper.shipped);
  }
  let natsUp = false;
  /** The service's first NATS connection is made and set up (from then on NATS may come and go). */
  let natsReady = false;
  /** Why the first connection is not made yet, for /readyz. */
  let natsProblem = "connecting";
  const cleanups: (() => Promise<unknown> | unknown)[] = [];
  let nats: NatsConnection | undefined;
  let applyReload: ((config: C) => void) | undefined;

  const shell: ServiceShell<C> = {
    config,
    log,
    instance: `${hostname()}-${process.pid}`,
    stopSignal: stop.signal,
    requestStop(reason) {
      if (stop.signal.aborted) return;
      log.info({ reason }, spec.stopping);
      stop.abort();
    },
    pool(side, poolConfig) {
      const pool = handlePoolErrors(new pg.Pool({ ...poolConfig, Client: clientNaming(side, poolConfig) }), (error, lostWhile) =>
        log.warn({ err: error }, lostWhile === "idle" ? `idle ${side} connection failed` : `${side} connection lost while in use; its work is retried`),
      );
      pools.push({ side, config: poolConfig, pool });
      return pool;
    },
    get nats() {
      return nats;
    },
    connectNatsInBackground(connectionName, onConnected, withoutNats) {
      void (async () => {
        let delayMs = 1000;
        // Until the connection is made and the service's subscriptions are set up: a failed set-up (a
        // subject the server refuses, JetStream not answering yet) closes the connection and tries again.
        while (!stop.signal.aborted) {
          let conn: NatsConnection | undefined;
          try {
            conn = await connectNats(natsSettingsFrom(config.values, connectionName), log, stop.signal, (p) => (natsProblem = p));
            if (stop.signal.aborted) return void (await conn.close());
            watchNats(conn);
            await onConnected(conn);
            natsReady = true;
            return;
          } catch (error) {
            if (stop.signal.aborted) return;
            natsProblem = `set-up failed: ${(error as Error).message ?? String(error)}`;
            log.error({ err: error, retryInMs: delayMs }, `NATS setup failed; ${withoutNats} until it works; retrying`);
            await conn?.close().catch(() => {});
            await sleep(delayMs, stop.signal);
            delayMs = Math.min(delayMs * 2, MAX_CONNECT_DELAY_MS);
          }
        }
      })();
    },
    async connectNatsNow(connectionName) {
      const conn = await connectNats(natsSettingsFrom(config.values, connectionName), log, stop.signal, (p) => (natsProblem = p));
      watchNats(conn);
      natsReady = true;
      return conn;
    },
    atExit(cleanup) {
      cleanups.push(cleanup);
    },
    onReload(apply) {
      applyReload = apply;
    },
    reloadConfig() {
      let fresh: C;
      try {
        fresh = spec.load();
      } catch (error) {
        log.error({ err: error }, "config reload failed; keeping the old config");
        return (error as Error).message;
      }
      const needRestart = Object.keys({ ...config.values, ...fresh.values }).filter(
        (k) => RESTART_KEYS.test(k) && JSON.stringify(config.values[k]) !== JSON.stringify(fresh.values[k]),
      );
      Object.assign(config, fresh);
      log.level = fresh.logLevel;
      applyReload?.(config);
      if (needRestart.length > 0) log.warn({ keys: needRestart }, "config reloaded; these keys take effect after a restart");
      else log.info("config reloaded");
      return undefined;
    },
    controlCommands(state) {
      const forMe = (r: Record<string, unknown>) => r.instance === undefined || r.instance === shell.instance;
      return {
        stop: {
          description: "stop this job's instances (or only `instance`) after their current unit of work",
          request: { instance: { type: "string", maxLength: 200 } },
          everyInstance: true,
          handler: async (r) => {
            if (!forMe(r)) return NO_REPLY;
            setImmediate(() => shell.requestStop("stop command"));
            return { instance: shell.instance, stopping: true };
          },
        },
        reload: {
          description: "re-read the config file (on every instance, or only on `instance`)",
          request: { instance: { type: "string", maxLength: 200 } },
          everyInstance: true,
          handler: async (r) => {
            if (!forMe(r)) return NO_REPLY;
            const problem = shell.reloadConfig();
            if (problem) throw new CommandError("internal", `config reload failed, keeping the old config: ${problem}`);
            return { instance: shell.instance, reloaded: true };
          },
        },
        ping: {
          description: "who is running, and in which state",
          request: {},
          everyInstance: true,
          handler: async () => ({ instance: shell.instance, ...state(), version: VERSION }),
        },
      };
    },
    metrics: registry,
  };

  function watchNats(conn: NatsConnection): void {
    nats = conn;
    natsUp = true;
    void (async () => {
      for await (const status of conn.status()) {
        if (status.type === "disconnect") natsUp = false;
        else if (status.type === "reconnect") natsUp = true;
      }
    })().catch(() => {});
    void conn.closed().then(() => (natsUp = false));
  }

  /** One short connection per database and probe: a busy pool must not make the service look down. */
  async function probe(side: string, poolConfig: pg.PoolConfig): Promise<string> {
    const Client = clientNaming(side, poolConfig);
    const client = new Client({ ...poolConfig, connectionTimeoutMillis: READY_PROBE_TIMEOUT_MS, query_timeout: READY_PROBE_TIMEOUT_MS });
    client.on("error", () => {});
    try {
      await client.connect();
      await client.query("select 1");
      return "ok";
    } catch (error) {
      return (error as Error).message || String(error);
    } finally {
      await client.end().catch(() => {});
    }
  }
  const readiness = async (): Promise<Record<string, string>> => {
    const checks: Record<string, string> = {};
    for (const p of pools) checks[`database:${p.side}`] = await probe(p.side, p.config);
    // Not ready before the first NATS connection is made and set up: a wrong URL or refused credentials must show.
    // Later, without NATS a ticker still ticks, replay still replays and a copy still copies: only the repair
    // worker needs it then.
    if (!natsReady) checks.nats = `not connected yet: ${natsProblem}`;
    else if (spec.needsNats || natsUp) checks.nats = natsUp ? "ok" : "not connected";
    return checks;
  };
  new Gauge({
    name: "skytools_database_up",
    help: "1 when a fresh connection to the database answers (probed at scrape time)",
    labelNames: ["side"],
    registers: [registry],
    async collect() {
      for (const p of pools) this.set({ side: p.side }, (await probe(p.side, p.config)) === "ok" ? 1 : 0);
    },
  });
  new Gauge({
    name: "skytools_nats_connected",
    help: "1 while the service is connected to NATS",
    registers: [registry],
    collect() {
      this.set(natsUp ? 1 : 0);
    },
  });

  // Started through npx, the PID the user holds is npm's, whose `sh -c` dies on a signal without
  // passing it on: when that parent goes away, stop as on SIGTERM instead of running on orphaned.
  if (process.env.npm_command === "exec") {
    const parent = process.ppid;
    const watch = setInterval(() => {
      if (process.ppid !== parent) shell.requestStop("the npx process that started this service exited");
    }, PARENT_CHECK_MS);
    watch.unref();
    cleanups.push(() => clearInterval(watch));
  }
  const onSignal = (signal: NodeJS.Signals) => shell.requestStop(signal);
  const onSighup = () => void shell.reloadConfig();
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSighup);
  let endpoint: MetricsEndpoint | undefined;
  try {
    if (config.metricsPort !== undefined) {
      endpoint = await serveMetrics(registry, config.metricsPort, config.metricsHost, readiness);
      log.info({ port: config.metricsPort, host: config.metricsHost }, "serving /metrics, /healthz and /readyz");
    }
    return (await spec.body(shell)) ?? 0;
  } catch (error) {
    log.error({ err: error }, `${spec.kind} failed`);
    return 1;
  } finally {
    stop.abort();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSighup);
    for (const cleanup of cleanups.reverse()) await Promise.resolve().then(cleanup).catch(() => {});
    await nats?.drain().catch(() => {});
    for (const p of pools) await p.pool.end().catch(() => {});
    await endpoint?.close().catch(() => {});
    releasePidfile();
    log.info(spec.summary?.() ?? {}, `${spec.kind} stopped`);
    await shipper?.close();
  }
}
