/**
 * `londiste CONFIG dashboard [--port N]`: a status page of every job under
 * the config's subject prefix, live. A service like the others (pidfile
 * and logfile with the suffix `.dashboard`, SIGTERM/SIGINT stop it), on
 * any host: it reads only NATS (collector.ts), never a database, so its
 * config may name the observer NATS user. It listens on dashboard_host
 * (default 127.0.0.1) and dashboard_port (default 8070; --port overrides)
 * and logs the page's URL.
 */
import { loadLondisteConfig } from "../../shared/config/londiste.ts";
import { emptyModel, dashboardView } from "../../shared/londiste/status-view.ts";
import { runService } from "../../shared/service-shell.ts";
import { Collector } from "./collector.ts";
import { dashboardServer } from "./server.ts";

/** How often each job's replay is asked for its status (one lag point each). */
const POLL_MS = 2000;
/** Views are pushed to the page at most this often. */
const PUSH_MS = 500;

export function parsePort(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) throw new Error(`--port needs a port number (0 to 65535; 0 picks a free one), got "${text}"`);
  return Number(text);
}

export async function runDashboard(configPath: string, options: { port?: string } = {}): Promise<number> {
  let port: number | undefined;
  try {
    port = parsePort(options.port);
  } catch (error) {
    process.stderr.write(`londiste: ${(error as Error).message}\n`);
    return 2;
  }
  return runService({
    kind: "dashboard",
    // The job's services serve metrics_port on their hosts; the dashboard has its own port.
    load: () => ({ ...loadLondisteConfig(configPath), metricsPort: undefined }),
    files: { fileSuffix: ".dashboard" },
    stopping: "stopping: closing the page's connections",
    needsNats: true,
    body: async (shell) => {
      const { config, log } = shell;
      const nc = await shell.connectNatsNow(`londiste dashboard ${config.jobName}`);
      const model = emptyModel();
      const view = () => dashboardView(model, Date.now(), config.jobName, configPath);
      const server = dashboardServer(view, PUSH_MS);
      const collector = new Collector(nc, model, {
        prefix: config.subjectPrefix,
        job: config.jobName,
        pollMs: POLL_MS,
        requestTimeoutMs: Math.min(config.commandTimeoutMs, 5000),
        log,
        changed: () => server.changed(),
        signal: shell.stopSignal,
      });
      collector.start();
      const host = config.values.dashboard_host as string;
      await server.app.listen({ port: port ?? (config.values.dashboard_port as number), host });
      const address = server.app.server.address();
      const bound = typeof address === "object" && address ? address.port : port;
      const url = `http://${host.includes(":") ? `[${host}]` : host}:${bound}/`;
      log.info({ url, prefix: config.subjectPrefix }, `dashboard at ${url}`);
      shell.atExit(() => server.close());
      await new Promise<void>((resolve) => {
        if (shell.stopSignal.aborted) resolve();
        shell.stopSignal.addEventListener("abort", () => resolve(), { once: true });
      });
      return 0;
    },
  });
}
