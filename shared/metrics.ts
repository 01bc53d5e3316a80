/**
 * The HTTP side of a service on `metrics_port` (no server when unset):
 * GET /metrics (Prometheus), GET /healthz (the process is alive and its
 * loop is not stuck) and GET /readyz (connected to what it needs: its
 * databases, and NATS where it serves only over NATS). Each service
 * registers its own figures on the registry it gets here.
 */
import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Registry } from "prom-client";

export interface MetricsEndpoint {
  registry: Registry;
  close(): Promise<void>;
}

/** What /readyz reports: ready only when every check is "ok". */
export type ReadinessCheck = () => Promise<Record<string, string>>;

export function createRegistry(service: string, job: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service, job });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Serves on `host` (127.0.0.1 unless configured otherwise); resolves once listening. */
export async function serveMetrics(registry: Registry, port: number, host = "127.0.0.1", readiness?: ReadinessCheck): Promise<MetricsEndpoint> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end("method not allowed\n");
      return;
    }
    if (path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
      return;
    }
    if (path === "/readyz") {
      (readiness ?? (async () => ({})))().then(
        (checks) => {
          const ready = Object.values(checks).every((v) => v === "ok");
          res.writeHead(ready ? 200 : 503, { "content-type": "application/json" }).end(JSON.stringify({ ready, checks }) + "\n");
        },
        (error: unknown) => res.writeHead(503, { "content-type": "application/json" }).end(JSON.stringify({ ready: false, error: String(error) }) + "\n"),
      );
      return;
    }
    if (path !== "/metrics") {
      res.writeHead(404).end("not found\n");
      return;
    }
    registry.metrics().then(
      (body) => res.writeHead(200, { "content-type": registry.contentType }).end(body),
      (error: unknown) => res.writeHead(500).end(String(error)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return {
    registry,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}
