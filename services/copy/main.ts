/**
 * The copy service (`londiste CONFIG copy`): a worker of the job's copy
 * pool. Any number run on any hosts; each copies up to parallel_copies
 * tables at once (scheduler.ts), taking each table through the copy side
 * of the seed's state table (table-worker.ts) under a lease that another
 * worker takes over when this one dies. Replay asks for copies on NATS
 * (copy requests, queue group `londiste-<job>-copy`); without NATS the
 * worker still finds its tables by polling. Tick notices wake tables that
 * wait for the next tick. Copy consumers left behind by dead workers are
 * dropped at start and every minute.
 *
 * Signals: SIGINT/SIGTERM stop claiming, roll back the running steps,
 * release the leases. Exit codes: 0 stopped, 2 bad config, 1 failure.
 */
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import pg from "pg";
import { connectNats } from "../../shared/bus/connect.ts";
import { tickNoticeSubject } from "../../shared/bus/subjects.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { startService } from "../../shared/service-start.ts";
import type { CopyContext } from "./context.ts";
import { dropStaleCopyConsumers } from "./copy-consumer.ts";
import { CopyScheduler } from "./scheduler.ts";
import { Wakeup } from "./wakeup.ts";

export const STALE_CONSUMER_CHECK_MS = 60_000;

export async function runCopyService(configPath: string): Promise<number> {
  const started = startService("copy", () => loadLondisteConfig(configPath));
  if ("exitCode" in started) return started.exitCode;
  const { config, log, releasePidfile } = started;

  const stop = new AbortController();
  const me = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const appName = `londiste ${config.jobName} copy`;
  // Per table: the lease heartbeat, progress writes, a batch transaction and its event reader.
  const provider = new pg.Pool({ ...config.provider, max: config.parallelCopies * 2 + 2, application_name: appName });
  const subscriber = new pg.Pool({ ...config.subscriber, max: config.parallelCopies * 3 + 2, application_name: appName });
  provider.on("error", (error) => log.warn({ err: error }, "idle provider connection failed"));
  subscriber.on("error", (error) => log.warn({ err: error }, "idle subscriber connection failed"));

  let nc: NatsConnection | undefined;
  const ctx: CopyContext = {
    provider,
    subscriber,
    config,
    me,
    log,
    ticks: new Wakeup(),
    publish: (subject, payload) => {
      if (nc && !nc.isClosed()) nc.publish(subject, JSON.stringify(payload));
    },
  };
  const scheduler = new CopyScheduler(ctx, stop.signal);

  const subjects = londisteSubjects(config.subjectPrefix, config.jobName);
  void connectNats(natsSettingsFrom(config.values, appName), log)
    .then((conn) => {
      if (stop.signal.aborted) return conn.close();
      nc = conn;
      conn.subscribe(subjects.copyRequest, { queue: `londiste-${config.jobName}-copy`, callback: () => scheduler.wake() });
      conn.subscribe(tickNoticeSubject(config.subjectPrefix, config.queue), { callback: () => ctx.ticks.notify() });
      log.info({ requests: subjects.copyRequest }, "listening for copy requests and tick notices");
    })
    .catch((error: unknown) => log.error({ err: error }, "NATS setup failed; polling for tables to copy"));

  const onStop = (signal: string) => {
    log.info({ signal }, "stopping: no new tables, rolling back the running steps");
    stop.abort();
  };
  process.on("SIGINT", onStop);
  process.on("SIGTERM", onStop);

  let staleTimer: NodeJS.Timeout | undefined;
  const dropStale = async () => {
    try {
      const dropped = await dropStaleCopyConsumers(ctx);
      if (dropped.length > 0) log.warn({ consumers: dropped }, "dropped copy consumers left behind by finished or dead copies");
    } catch (error) {
      log.debug({ err: error }, "could not check for stale copy consumers");
    }
  };

  log.info({ queue: config.queue, worker: me, parallelCopies: config.parallelCopies, leaseS: config.copyLeaseMs / 1000 }, "copy worker starting");
  let exitCode = 0;
  try {
    await dropStale();
    staleTimer = setInterval(() => void dropStale(), STALE_CONSUMER_CHECK_MS);
    await scheduler.run();
  } catch (error) {
    log.error({ err: error }, "copy worker failed");
    exitCode = 1;
  } finally {
    process.off("SIGINT", onStop);
    process.off("SIGTERM", onStop);
    if (staleTimer) clearInterval(staleTimer);
    await nc?.drain().catch(() => {});
    await provider.end().catch(() => {});
    await subscriber.end().catch(() => {});
    releasePidfile();
    log.info("copy worker stopped");
  }
  return exitCode;
}
