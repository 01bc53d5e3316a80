/**
 * The copy service (`londiste CONFIG copy`): a worker of the job's copy
 * pool. Any number run on any hosts; each copies up to parallel_copies
 * tables at once (scheduler.ts), taking each table through the copy side
 * of the state table in docs/protocols.md, "Initial copy and the handover
 * to replay" (table-worker.ts), under a lease that another worker takes
 * over when this one dies. Replay asks for copies on NATS
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
import { startCommandService } from "../../shared/bus/command-service.ts";
import { tickNoticeSubject } from "../../shared/bus/subjects.ts";
import { type LondisteConfig, loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { runService, type ServiceShell } from "../../shared/service-shell.ts";
import { VERSION } from "../../shared/version.ts";
import type { CopyContext } from "./context.ts";
import { dropStaleCopyConsumers } from "./copy-consumer.ts";
import { copyMetrics } from "./metrics.ts";
import { CopyScheduler } from "./scheduler.ts";
import { Wakeup } from "./wakeup.ts";

export const STALE_CONSUMER_CHECK_MS = 60_000;

export async function runCopyService(configPath: string, options: { instance?: string } = {}): Promise<number> {
  return runService({
    kind: "copy",
    load: () => loadLondisteConfig(configPath),
    files: { fileSuffix: ".copy", instanceName: options.instance },
    stopping: "stopping: no new tables, rolling back the running steps",
    body: copyBody,
  });
}

async function copyBody(shell: ServiceShell<LondisteConfig>): Promise<number> {
  const { config, log } = shell;
  // The lease owner: host:pid:random, so a log or a test can tell the process and a restarted one apart.
  const me = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const appName = `londiste ${config.jobName} copy`;
  // Per table: the lease heartbeat, progress writes, a batch transaction and its event reader.
  const provider = shell.pool("provider", { ...config.provider, max: config.parallelCopies * 2 + 2, application_name: appName });
  const subscriber = shell.pool("subscriber", { ...config.subscriber, max: config.parallelCopies * 3 + 2, application_name: appName });

  const ctx: CopyContext = {
    provider,
    subscriber,
    config,
    me,
    log,
    ticks: new Wakeup(),
    publish: (subject, payload) => {
      const nc = shell.nats;
      if (nc && !nc.isClosed()) nc.publish(subject, JSON.stringify(payload));
    },
    // Read at scrape time only, when the scheduler exists.
    progressHooks: copyMetrics(shell.metrics, { activeCopies: () => scheduler.tables.length }),
  };
  const scheduler = new CopyScheduler(ctx, shell.stopSignal);

  const subjects = londisteSubjects(config.subjectPrefix, config.jobName);
  shell.connectNatsInBackground(
    appName,
    async (conn) => {
      conn.subscribe(subjects.copyRequest, { queue: `londiste-${config.jobName}-copy`, callback: () => scheduler.wake() });
      conn.subscribe(tickNoticeSubject(config.subjectPrefix, config.queue), { callback: () => ctx.ticks.notify() });
      log.info({ requests: subjects.copyRequest }, "listening for copy requests and tick notices");
      // Listed by $SRV like every service, and reached by `londiste CONFIG stop|reload|ping`.
      const service = await startCommandService(conn, {
        name: "londiste-copy",
        version: VERSION,
        description: `londiste copy worker for job ${config.jobName}`,
        subjectPrefix: subjects.commandPrefix,
        commands: shell.controlCommands(() => ({ service: "copy", worker: me, copies: scheduler.tables })),
        metadata: { job: config.jobName, instance: shell.instance },
        queue: `londiste-${config.jobName}-copy`,
        // The job's replay answers requests for unknown commands.
        unknownCommands: "none",
        log,
        stats: () => ({ instance: shell.instance, worker: me, copies: scheduler.tables }),
      });
      shell.atExit(() => service.stop());
    },
    "polling for tables to copy",
  );

  const dropStale = async () => {
    try {
      const dropped = await dropStaleCopyConsumers(ctx);
      if (dropped.length > 0) log.warn({ consumers: dropped }, "dropped copy consumers left behind by finished or dead copies");
    } catch (error) {
      log.debug({ err: error }, "could not check for stale copy consumers");
    }
  };

  log.info({ queue: config.queue, worker: me, parallelCopies: config.parallelCopies, leaseS: config.copyLeaseMs / 1000 }, "copy worker starting");
  await dropStale();
  const staleTimer = setInterval(() => void dropStale(), STALE_CONSUMER_CHECK_MS);
  shell.atExit(() => clearInterval(staleTimer));
  await scheduler.run();
  return 0;
}
