/**
 * `londiste CONF dashboard` on the command line: listed in --help, a bad
 * --port is one line and exit 2, --port on another command is refused,
 * and the page serves its assets (no CDN) with a Content-Security-Policy
 * of its own origin only, and answers /api/view for its job before any
 * service of the job runs.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { natsUrl, uniqueSubjectPrefix } from "../support/db.ts";
import { runPgqadm, show } from "../support/pgqadm.ts";
import { makeTempDir, ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { LONDISTE_LAUNCHER } from "../londiste/job.ts";

useProcessCleanup();

function config(): string {
  const dir = makeTempDir("dashboard-cli");
  const conf = join(dir, "londiste.ini");
  writeFileSync(
    conf,
    [
      "[londiste]",
      "job_name = lonely",
      "provider_db = postgres://nobody@127.0.0.1:1/none",
      "subscriber_db = postgres://nobody@127.0.0.1:1/none",
      "pgq_queue_name = q",
      `nats_url = ${natsUrl()}`,
      `subject_prefix = ${uniqueSubjectPrefix("dashcli")}`,
      "command_timeout = 1",
      "",
    ].join("\n"),
  );
  return conf;
}

const londiste = (...args: string[]) => runPgqadm(args, { command: [process.execPath, LONDISTE_LAUNCHER] });

describe("londiste CONF dashboard", () => {
  it("is in --help; a bad --port is refused in one line; --port belongs to dashboard only", async () => {
    const conf = config();
    const [help, badPort, elsewhere] = await Promise.all([
      londiste("--help"),
      londiste(conf, "dashboard", "--port", "http"),
      londiste(conf, "status", "--port", "8080"),
    ]);
    expect(help.stdout).toMatch(/^ {2}dashboard \[--port N\] +a live status page/m);
    expect(badPort.code, show(badPort)).toBe(2);
    expect(badPort.stderr).toBe('londiste: --port needs a port number (0 to 65535; 0 picks a free one), got "http"\n');
    expect(elsewhere.code, show(elsewhere)).toBe(2);
    expect(elsewhere.stderr).toBe('londiste: --port does not apply to "status"\n');
  });

  it("serves the page and its assets from the package, and says when no replay answers", async () => {
    const dashboard = new ServiceProcess("dashboard", process.execPath, [LONDISTE_LAUNCHER, config(), "dashboard", "--port", "0"]);
    const url = (await dashboard.waitForLog(/^dashboard at /)).url as string;
    const page = await fetch(url);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toMatch(/^default-src 'self'; script-src 'self';/);
    const html = await page.text();
    // Every script and style comes from this server: nothing from another origin.
    expect([...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1])).toEqual(["/assets/uPlot.min.css", "/assets/style.css", "/assets/uPlot.iife.min.js", "/assets/app.js"]);
    const uplot = await fetch(`${url}assets/uPlot.iife.min.js`);
    expect(uplot.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(await uplot.text()).toContain("uPlot");
    expect((await fetch(`${url}assets/..%2Fpackage.json`)).status).toBe(404);

    // No replay of the job runs: the view says so instead of showing nothing.
    const warnings = await waitFor(
      async () => {
        const view = (await (await fetch(`${url}api/view`)).json()) as { jobs: Array<{ job: string; warnings: string[] }> };
        const w = view.jobs.find((j) => j.job === "lonely")?.warnings ?? [];
        return w.length > 0 ? w : undefined;
      },
      { timeoutMs: 60_000, what: "the view to say that no replay answers" },
    );
    expect(warnings).toEqual([expect.stringMatching(/^status: no replay of the job answers on test\.dashcli_\w+\.londiste\.lonely\.status$/)]);

    // The event stream starts with the current view.
    const events = await fetch(`${url}api/events`);
    expect(events.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const reader = events.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(first).toMatch(/^event: view\ndata: \{"generatedAt":/);
    await reader.cancel();

    process.kill(dashboard.pid, "SIGTERM");
    expect((await dashboard.waitForExit()).code).toBe(0);
  });
});
