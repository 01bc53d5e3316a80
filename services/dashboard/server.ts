/**
 * The dashboard's web side (Fastify): the page and its assets, all served
 * from the package (uPlot from its npm package, the page from
 * services/dashboard/public/), so it works without internet access; the
 * current view as JSON (`/api/view`), and the same view pushed as
 * server-sent events (`/api/events`) whenever it changed, at most once per
 * `pushMs`. Nothing here shapes data: `view()` does (status-view.ts).
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import Fastify, { type FastifyInstance } from "fastify";
import { packagePath } from "../../shared/package-root.ts";

const require = createRequire(import.meta.url);

/** The files the page loads: name in /assets/ → path and type. Nothing else is served from disk. */
function assets(): Record<string, { path: string; type: string }> {
  const uplot = (file: string) => require.resolve(`uplot/dist/${file}`);
  const own = (file: string) => packagePath("services", "dashboard", "public", file);
  return {
    "uPlot.iife.min.js": { path: uplot("uPlot.iife.min.js"), type: "text/javascript; charset=utf-8" },
    "uPlot.min.css": { path: uplot("uPlot.min.css"), type: "text/css; charset=utf-8" },
    "app.js": { path: own("app.js"), type: "text/javascript; charset=utf-8" },
    "style.css": { path: own("style.css"), type: "text/css; charset=utf-8" },
  };
}

/** Only this origin's scripts, styles and connections: no CDN, no inline script. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

/** Keeps idle proxies from closing the event stream. */
const HEARTBEAT_MS = 15_000;

export interface DashboardServer {
  app: FastifyInstance;
  /** Call when the view may have changed: pushed to every open page within `pushMs`. */
  changed(): void;
  close(): Promise<void>;
}

export function dashboardServer(view: () => unknown, pushMs: number): DashboardServer {
  // forceCloseConnections: open event streams would hold close() forever.
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const files = assets();
  const page = readFileSync(packagePath("services", "dashboard", "public", "index.html"), "utf8");
  const clients = new Set<(data: string) => void>();

  app.addHook("onSend", async (_request, reply) => {
    reply.header("content-security-policy", CSP);
    reply.header("x-content-type-options", "nosniff");
  });
  app.get("/", async (_request, reply) => reply.type("text/html; charset=utf-8").send(page));
  app.get<{ Params: { name: string } }>("/assets/:name", async (request, reply) => {
    const file = Object.hasOwn(files, request.params.name) ? files[request.params.name]! : undefined;
    if (!file) return reply.code(404).type("text/plain").send("not found");
    return reply.type(file.type).header("cache-control", "no-cache").send(readFileSync(file.path));
  });
  app.get("/api/view", async () => view());
  app.get("/api/events", (request, reply) => {
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
      connection: "keep-alive",
      "content-security-policy": CSP,
    });
    const send = (data: string) => res.write(`event: view\ndata: ${data}\n\n`);
    send(JSON.stringify(view()));
    clients.add(send);
    const heartbeat = setInterval(() => res.write(": still here\n\n"), HEARTBEAT_MS);
    request.raw.on("close", () => {
      clearInterval(heartbeat);
      clients.delete(send);
    });
  });

  let pending: NodeJS.Timeout | undefined;
  return {
    app,
    changed() {
      if (pending || clients.size === 0) return;
      pending = setTimeout(() => {
        pending = undefined;
        const data = JSON.stringify(view());
        for (const send of clients) send(data);
      }, pushMs);
    },
    async close() {
      clearTimeout(pending);
      await app.close();
    },
  };
}
