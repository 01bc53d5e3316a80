/**
 * The ticker service (`pgqadm CONFIG ticker`): ticks and maintains the
 * queues of one database, publishes a notice on NATS after each tick, and
 * serves the pgqadm admin commands. NATS is optional for ticking: while it
 * is away the ticker keeps ticking and only notices and commands wait.
 *
 * Signals: SIGINT/SIGTERM stop after the current unit of work; SIGHUP
 * reloads the config. Exit codes: 0 stopped, 2 bad config, 1 other failure.
 */
import type pg from "pg";
import { Counter, Gauge } from "prom-client";
import { startCommandService } from "../../shared/bus/command-service.ts";
import { tickNoticeSubject, type TickNotice } from "../../shared/bus/subjects.ts";
import { runService, type ServiceShell } from "../../shared/service-shell.ts";
import { getQueueInfo } from "../../shared/pgq/index.ts";
import { VERSION } from "../../shared/version.ts";
import { adminCommands } from "./admin-commands.ts";
import { loadTickerConfig, type TickerConfig, tickerSubjects } from "../../shared/config/pgqadm.ts";
import { TickerLoop } from "./ticker-loop.ts";

/** The database name of a pg config, for tick notices: keyword DSNs give it directly, URLs in their path. */
function databaseName(db: pg.ClientConfig): string | undefined {
  if (typeof db.database === "string") return db.database;
  if (db.connectionString) {
    try {
      return decodeURIComponent(new URL(db.connectionString).pathname.slice(1)) || undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

export async function runTickerService(configPath: string): Promise<number> {
  return runService({
    kind: "ticker",
    load: () => loadTickerConfig(configPath),
    stopping: "stopping after the current unit of work",
    body: tickerBody,
  });
}

async function tickerBody(shell: ServiceShell<TickerConfig>): Promise<number> {
  const config = shell.config;
  const { log, instance } = shell;
  const pool = shell.pool("admin", { ...config.db, max: 2, application_name: `pgqadm ${config.jobName} admin` });

  const registry = shell.metrics;
  const ticks = new Counter({ name: "pgq_ticks_total", help: "ticks made by this instance", labelNames: ["queue"], registers: [registry] });
  const errors = new Counter({ name: "pgq_ticker_errors_total", help: "database errors in the tick loop", registers: [registry] });
  const maintenances = new Counter({ name: "pgq_maintenance_runs_total", help: "maintenance runs", registers: [registry] });
  const active = new Gauge({ name: "pgq_ticker_active", help: "1 when this instance is the active ticker", registers: [registry] });
  new Gauge({
    name: "pgq_queue_ticker_lag_seconds",
    help: "seconds since the queue's last tick",
    labelNames: ["queue"],
    registers: [registry],
    async collect() {
      for (const q of await getQueueInfo(pool).catch(() => [])) {
        if (q.tickerLagSeconds !== null) this.set({ queue: q.queueName }, q.tickerLagSeconds);
      }
    },
  });

  const database = databaseName(config.db);
  const loop = new TickerLoop(config, log, {
    onTicks(results) {
      const nc = shell.nats;
      for (const r of results) {
        ticks.inc({ queue: r.queue });
        if (nc && !nc.isClosed()) {
          const notice: TickNotice = { queue: r.queue, tick_id: r.tickId, time: r.time.toISOString(), database };
          nc.publish(tickNoticeSubject(config.subjectPrefix, r.queue), JSON.stringify(notice));
        }
      }
    },
    onMaintenance: () => maintenances.inc(),
    onError: () => errors.inc(),
    onState: (state) => active.set(state === "active" ? 1 : 0),
  });

  shell.onReload((fresh) => loop.reconfigure(fresh));
  const control = shell.controlCommands(() => ({ state: loop.state }));

  const subjects = tickerSubjects(config.subjectPrefix, config.jobName);
  shell.connectNatsInBackground(
    `pgqadm ${config.jobName} ${instance}`,
    async (conn) => {
      const service = await startCommandService(conn, {
        name: "pgqadm-ticker",
        version: VERSION,
        description: `PgQ ticker and admin commands for job ${config.jobName}`,
        subjectPrefix: subjects.commandPrefix,
        commands: { ...adminCommands(pool, { maxQueues: () => config.maxQueues }), ...control },
        metadata: { job: config.jobName, instance },
        queue: `pgqadm-${config.jobName}`,
        log,
        stats: () => ({
          instance,
          state: loop.state,
          ticks_by_queue: Object.fromEntries(loop.ticksByQueue),
          last_maintenance: loop.lastMaintenance?.at.toISOString() ?? null,
        }),
      });
      shell.atExit(() => service.stop());
      log.info({ subjects: `${subjects.commandPrefix}.*` }, "serving admin commands on NATS");
    },
    "ticking goes on without it",
  );

  log.info({ loop_delay_s: config.loopDelayMs / 1000, maint_delay_s: config.maintDelayMs / 1000, instance }, "ticker starting");
  await loop.run(shell.stopSignal);
  return 0;
}
