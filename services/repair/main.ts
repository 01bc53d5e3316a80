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
 * Fix files go only inside repair_dir; at most repair_max_requests
 * requests run at once, more are refused (unavailable) rather than queued.
 *
 * Signals: SIGINT/SIGTERM stop taking requests, abort the running ones
 * (their holds on replay are released) and exit.
 * Exit codes: 0 stopped, 2 bad config, 1 other failure (NATS unreachable).
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { type CommandSpec, startCommandService } from "../../shared/bus/command-service.ts";
import { CommandError } from "../../shared/bus/replies.ts";
import { tickNoticeSubject, type TickNotice } from "../../shared/bus/subjects.ts";
import { type LondisteConfig, loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { withPinnedSettings } from "../../shared/londiste/compare/settings.ts";
import { runService, type ServiceShell } from "../../shared/service-shell.ts";
import { sleep } from "../../shared/sleep.ts";
import { VERSION } from "../../shared/version.ts";
import { compareCommand } from "./compare.ts";
import type { RepairContext } from "./context.ts";
import { repairMetrics } from "./metrics.ts";
import { repairCommand } from "./repair.ts";

/** `<prefix>.londiste.<job>.repair.progress`: what running requests report. */
export function repairProgressSubject(prefix: string, job: string): string {
  return `${londisteSubjects(prefix, job).commandPrefix}.repair.progress`;
}

export async function runRepairService(configPath: string, options: { instance?: string } = {}): Promise<number> {
  const counts = { served: 0 };
  return runService({
    kind: "repair",
    load: () => loadLondisteConfig(configPath),
    files: { fileSuffix: ".repair", instanceName: options.instance },
    stopping: "stopping: aborting the running requests",
    body: (shell) => repairBody(shell, counts),
    summary: () => ({ served: counts.served }),
    needsNats: true,
  });
}

async function repairBody(shell: ServiceShell<LondisteConfig>, counts: { served: number }): Promise<number> {
  const { config, log, instance } = shell;
  const stop = { signal: shell.stopSignal };
  const appName = `londiste ${config.jobName} repair`;
  // Every connection starts under the pinned settings, so values print the same text on both sides.
  const provider = shell.pool("provider", withPinnedSettings({ ...config.provider, max: 12, application_name: appName }));
  const subscriber = shell.pool("subscriber", withPinnedSettings({ ...config.subscriber, max: 12, application_name: appName }));
  const progressSubject = repairProgressSubject(config.subjectPrefix, config.jobName);
  let running = 0;
  const metrics = repairMetrics(shell.metrics);

  const base: RepairContext = {
    provider,
    subscriber,
    queue: config.queue,
    consumer: config.consumer,
    jobName: config.jobName,
    log,
    instance,
    signal: stop.signal,
    repairDir: () => config.repairDir,
    progress: () => {},
    notifyTick: (tick) => {
      const notice: TickNotice = { queue: config.queue, tick_id: tick, time: new Date().toISOString(), database: undefined };
      const nc = shell.nats;
      if (nc && !nc.isClosed()) nc.publish(tickNoticeSubject(config.subjectPrefix, config.queue), JSON.stringify(notice));
    },
  };

  /** Each request gets its id in its progress reports and log lines. */
  const perRequest = (command: string, make: (ctx: RepairContext) => CommandSpec): CommandSpec => {
    const probe = make(base);
    return {
      ...probe,
      handler: async (request) => {
        if (running >= config.repairMaxRequests) {
          // Each request holds connections, spools and (briefly) replay: a bound keeps a flood from piling up.
          throw new CommandError("unavailable", `this repair worker (${instance}) runs ${running} requests already, the most repair_max_requests allows: try again later`);
        }
        const id = Math.random().toString(36).slice(2, 10);
        const ctx: RepairContext = {
          ...base,
          log: log.child({ request: id, command }),
          progress: (report) => {
            const nc = shell.nats;
            if (nc && !nc.isClosed()) nc.publish(progressSubject, JSON.stringify({ request: id, command, instance, time: new Date().toISOString(), ...report }));
          },
        };
        running++;
        metrics.started(command);
        const t0 = Date.now();
        ctx.log.info({ request }, `${command} started`);
        ctx.progress({ phase: "started", request_body: request });
        try {
          const result = await make(ctx).handler(request);
          ctx.progress({ phase: "finished", seconds: (Date.now() - t0) / 1000 });
          metrics.finished(command, result);
          return result;
        } catch (error) {
          ctx.progress({ phase: "failed", error: (error as Error).message ?? String(error) });
          metrics.failed(command);
          throw error;
        } finally {
          running--;
          counts.served++;
          ctx.log.info({ seconds: (Date.now() - t0) / 1000 }, `${command} finished`);
        }
      },
    };
  };

  const subjects = londisteSubjects(config.subjectPrefix, config.jobName);
  let nc: NatsConnection;
  try {
    nc = await shell.connectNatsNow(appName);
  } catch (error) {
    log.error({ err: error }, "cannot connect to NATS: the repair worker serves its commands only over NATS");
    return 1;
  }
  if (stop.signal.aborted) return 0;
  const service = await startCommandService(nc, {
    name: "londiste-repair",
    version: VERSION,
    description: `londiste compare and repair for job ${config.jobName}`,
    subjectPrefix: subjects.commandPrefix,
    commands: {
      compare: perRequest("compare", compareCommand),
      repair: perRequest("repair", repairCommand),
      ...shell.controlCommands(() => ({ service: "repair", running, served: counts.served })),
    },
    metadata: { job: config.jobName, instance },
    queue: `londiste-${config.jobName}-repair`,
    // The job's replay answers requests for unknown commands.
    unknownCommands: "none",
    log,
    stats: () => ({ instance, running, served: counts.served }),
  });
  shell.atExit(() => service.stop());
  log.info({ subjects: [subjects.command("compare"), subjects.command("repair")], progress: progressSubject }, "serving compare and repair on NATS");
  await new Promise<void>((resolve) => {
    if (stop.signal.aborted) resolve();
    stop.signal.addEventListener("abort", () => resolve(), { once: true });
  });
  // Let the running requests see the abort and release their holds.
  const deadline = Date.now() + 10_000;
  while (running > 0 && Date.now() < deadline) await sleep(50);
  return 0;
}
