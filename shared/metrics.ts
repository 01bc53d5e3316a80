/**
 * Prometheus metrics over HTTP for a service: GET /metrics on the port from
 * config (no server when the port is unset). Each service registers its
 * own figures on the registry it gets here.
 */
import { createServer, type Server } from "node:http";
import { collectDefaultMetrics, Registry } from "prom-client";

export interface MetricsEndpoint {
  registry: Registry;
  close(): Promise<void>;
}

export function createRegistry(service: string, job: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service, job });
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Serves the registry on 127.0.0.1 or `host`; resolves once listening. */
export async function serveMetrics(registry: Registry, port: number, host = "0.0.0.0"): Promise<MetricsEndpoint> {
  const server: Server = createServer((req, res) => {
    if (req.url !== "/metrics") {
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
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
