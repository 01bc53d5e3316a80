/**
 * The repair worker (`londiste CONFIG repair-worker`): serves the job's
 * `compare` and `repair` commands over NATS (`<prefix>.londiste.<job>.compare`
 * and `.repair`, queue group `londiste-<job>-repair`, so any number of
 * workers on any hosts share the requests; listed by $SRV as
 * `londiste-repair`). A request is answered when its work is done (clients
 * wait with a long timeout); meanwhile progress reports go to
 * `<prefix>.londiste.<job>.repair.progress`. Run it on a third machine to
 * keep the merge work off both databases.
 *
 * Signals: SIGINT/SIGTERM stop taking requests, abort the running ones
 * (their holds on replay are released) and exit.
 * Exit codes: 0 stopped, 2 bad config, 1 other failure (NATS unreachable).
 */
import { hostname } from "node:os";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Service } from "@nats-io/services";
import pg from "pg";
import { type CommandSpec, startCommandService } from "../../shared/bus/command-service.ts";
import { connectNats } from "../../shared/bus/connect.ts";
import { tickNoticeSubject, type TickNotice } from "../../shared/bus/subjects.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { withPinnedSettings } from "../../shared/londiste/compare/settings.ts";
import { startService } from "../../shared/service-start.ts";
import { VERSION } from "../../shared/version.ts";
import { compareCommand } from "./compare.ts";
import type { RepairContext } from "./context.ts";
import { repairCommand } from "./repair.ts";

/** `<prefix>.londiste.<job>.repair.progress`: what running requests report. */
export function repairProgressSubject(prefix: string, job: string): string {
  return `${londisteSubjects(prefix, job).commandPrefix}.repair.progress`;
}

/** A pool whose every connection starts under the pinned settings. */
function pinnedPool(config: pg.PoolConfig, log: RepairContext["log"]): pg.Pool {
  const pool = new pg.Pool(withPinnedSettings(config));
  pool.on("error", (error) => log.warn({ err: error }, "idle connection failed"));
  return pool;
}

export async function runRepairService(configPath: string): Promise<number> {
  const started = startService("repair", () => loadLondisteConfig(configPath));
  if ("exitCode" in started) return started.exitCode;
  const { config, log, releasePidfile } = started;

  const stop = new AbortController();
  const instance = `${hostname()}:${process.pid}`;
  const appName = `londiste ${config.jobName} repair`;
  const provider = pinnedPool({ ...config.provider, max: 12, application_name: appName }, log);
  const subscriber = pinnedPool({ ...config.subscriber, max: 12, application_name: appName }, log);
  const progressSubject = repairProgressSubject(config.subjectPrefix, config.jobName);
  let nc: NatsConnection | undefined;
  let service: Service | undefined;
  let running = 0;
  let served = 0;

  const base: RepairContext = {
    provider,
    subscriber,
    queue: config.queue,
    consumer: config.consumer,
    jobName: config.jobName,
    log,
    instance,
    signal: stop.signal,
    progress: () => {},
    notifyTick: (tick) => {
      const notice: TickNotice = { queue: config.queue, tick_id: tick, time: new Date().toISOString(), database: undefined };
      if (nc && !nc.isClosed()) nc.publish(tickNoticeSubject(config.subjectPrefix, config.queue), JSON.stringify(notice));
    },
  };

  /** Each request gets its id in its progress reports and log lines. */
  const perRequest = (command: string, make: (ctx: RepairContext) => CommandSpec): CommandSpec => {
    const probe = make(base);
    return {
      ...probe,
      handler: async (request) => {
        const id = Math.random().toString(36).slice(2, 10);
        const ctx: RepairContext = {
          ...base,
          log: log.child({ request: id, command }),
          progress: (report) => {
            if (nc && !nc.isClosed()) nc.publish(progressSubject, JSON.stringify({ request: id, command, instance, time: new Date().toISOString(), ...report }));
          },
        };
        running++;
        const t0 = Date.now();
        ctx.log.info({ request }, `${command} started`);
        ctx.progress({ phase: "started", request_body: request });
        try {
          const result = await make(ctx).handler(request);
          ctx.progress({ phase: "finished", seconds: (Date.now() - t0) / 1000 });
          return result;
        } catch (error) {
          ctx.progress({ phase: "failed", error: (error as Error).message ?? String(error) });
          throw error;
        } finally {
          running--;
          served++;
          ctx.log.info({ seconds: (Date.now() - t0) / 1000 }, `${command} finished`);
        }
      },
    };
  };

  let idle: (() => void) | undefined;
  const onStop = (signal: string) => {
    log.info({ signal, running }, "stopping: aborting the running requests");
    stop.abort();
    idle?.();
  };
  process.on("SIGINT", onStop);
  process.on("SIGTERM", onStop);

  const subjects = londisteSubjects(config.subjectPrefix, config.jobName);
  try {
    try {
      nc = await connectNats(natsSettingsFrom(config.values, appName), log);
    } catch (error) {
      log.error({ err: error }, "cannot connect to NATS: the repair worker serves its commands only over NATS");
      return 1;
    }
    if (stop.signal.aborted) return 0;
    service = await startCommandService(nc, {
      name: "londiste-repair",
      version: VERSION,
      description: `londiste compare and repair for job ${config.jobName}`,
      subjectPrefix: subjects.commandPrefix,
      commands: {
        compare: perRequest("compare", compareCommand),
        repair: perRequest("repair", repairCommand),
      },
      metadata: { job: config.jobName, instance },
      queue: `londiste-${config.jobName}-repair`,
      log,
      stats: () => ({ instance, running, served }),
    });
    log.info({ subjects: [subjects.command("compare"), subjects.command("repair")], progress: progressSubject }, "serving compare and repair on NATS");
    await new Promise<void>((resolve) => {
      idle = resolve;
      if (stop.signal.aborted) resolve();
    });
    // Let the running requests see the abort and release their holds.
    const deadline = Date.now() + 10_000;
    while (running > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return 0;
  } finally {
    process.off("SIGINT", onStop);
    process.off("SIGTERM", onStop);
    await service?.stop().catch(() => {});
    await nc?.drain().catch(() => {});
    await provider.end().catch(() => {});
    await subscriber.end().catch(() => {});
    releasePidfile();
    log.info({ served }, "repair worker stopped");
  }
}
