/**
 * `londiste CONF dashboard` in a real browser: ticker, replay, a copy
 * worker and the dashboard run as their own processes, Debian's headless
 * Chromium (also a process of the harness) is driven over CDP by
 * playwright-core. From the rendered page only:
 *  - a table added while the page is open goes through its states to ok
 *    (the path the page shows passes in-copy and ends at ok);
 *  - the lag chart has points, and its text alternative says how many;
 *  - the services that answer are listed, replay as active, and the ticker;
 *  - a planted error (a column added on the provider after the capture
 *    was made) shows its message and the command that fixes it;
 *  - a copy made slow on purpose (a domain check that sleeps on the
 *    subscriber) shows as a progress bar with rows, MB/s, then goes away.
 * The page's screenshot is saved to test-results/dashboard.png
 * (docs/img/dashboard.png with SAVE_SCREENSHOT=1, as shown in the README).
 */
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk } from "../support/pgqadm.ts";
import { makeTempDir, REPO_ROOT, ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { createLondisteJob, installJob, type LondisteJob } from "../londiste/job.ts";

useProcessCleanup();

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const ROWS = 30_000;
const SLOW_ROWS = 5_000;

let job: LondisteJob;
let dashboard: ServiceProcess;
let browser: Browser;
let page: Page;
let url: string;

/** Starts Chromium as a harness process with a fresh profile and connects to it over CDP. */
async function startBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM_BIN`);
  }
  const profile = makeTempDir("dashboard-chromium");
  const p = new ServiceProcess("chromium", CHROMIUM, [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    `--user-data-dir=${profile}`,
    "--remote-debugging-port=0",
    "about:blank",
  ]);
  const ws = await waitFor(() => /DevTools listening on (ws:\/\/\S+)/.exec(p.output)?.[1], {
    timeoutMs: 60_000,
    what: `Chromium's DevTools address; output:\n${p.output}`,
  });
  return chromium.connectOverCDP(ws);
}

async function onBoth(sql: string): Promise<void> {
  await job.provider.query(sql);
  await job.subscriber.query(sql);
}

/** Text of the page's element, or undefined while it is not there. */
async function text(selector: string): Promise<string | undefined> {
  const el = await page.$(selector);
  return el ? ((await el.textContent()) ?? "") : undefined;
}

describe("londiste dashboard in Chromium", () => {
  beforeAll(async () => {
    job = await createLondisteJob({ label: "dashweb" });
    const replay = job.startReplay();
    await replay.waitForLog("active: this instance replays the job", { timeoutMs: 60_000 });
    await installJob(job);
    job.start("dashweb-copy", "copy");
    dashboard = job.start("dashweb-dashboard", "dashboard", ["--port", "0"]);
    const line = await dashboard.waitForLog(/^dashboard at /);
    url = line.url as string;
    browser = await startBrowser();
    page = await browser.newPage({ viewport: { width: 1100, height: 1300 } });
    await page.goto(url);
  });

  afterAll(async () => {
    await browser?.close().catch(() => {});
    await job?.drop();
  });

  it("shows a table going through its states to ok, the lag chart, the services and a planted error", async () => {
    await onBoth("create table public.orders (id int primary key, customer text, amount numeric)");
    await onBoth("create table public.notes (id int primary key, v text)");
    await job.provider.query(`insert into public.orders select g, 'c' || g % 100, g * 1.5 from generate_series(1, ${ROWS}) g`);
    await job.provider.query("insert into public.notes values (1, 'first')");
    await job.provider.query("analyze public.orders");
    expectOk(await job.londiste("provider", "add", "public.orders", "public.notes"));
    expectOk(await job.londiste("subscriber", "add", "public.orders", "public.notes"));

    // The table's row on the page reaches ok, having passed the copy.
    const ordersRow = 'section[data-job] tr[data-table="public.orders"]';
    const path = await waitFor(
      async () => {
        const state = await page.getAttribute(`${ordersRow} td[data-state]`, "data-state").catch(() => null);
        const path = await text(`${ordersRow} td.path`);
        return state === "ok" && path?.endsWith("ok") ? path : undefined;
      },
      { timeoutMs: 120_000, what: "public.orders to show ok on the page, with the path it took" },
    );
    expect(path).toMatch(/^none → in-copy → catching-up → wanna-sync → do-sync → ok$/);
    expect(await text(`${ordersRow} td:nth-of-type(2)`)).toBe("step 6 of 6");
    expect(await text(`${ordersRow} time`)).not.toBe("-");

    // The lag chart has points and says so in its text alternative.
    const chart = "section[data-job] .chart";
    await waitFor(async () => Number(await page.getAttribute(chart, "data-points")) >= 2, { timeoutMs: 60_000, what: "lag points on the chart" });
    expect(await page.getAttribute(chart, "aria-label")).toMatch(/^Lag of job dashweb_job over the last hour: lag now .* \(\d+ points\)$/);
    expect(await page.$(`${chart} canvas`)).not.toBeNull();

    // The services that answer: replay active, the copy worker.
    await waitFor(async () => (await text("table.services tbody"))?.includes("active"), { timeoutMs: 30_000, what: "replay listed as active" });
    const services = (await text("table.services tbody"))!;
    expect(services).toContain("replay");
    expect(services).toContain("copy");
    await waitFor(async () => (await text("table.services tbody"))?.includes("ticker"), { timeoutMs: 30_000, what: "the job's ticker listed" });

    // A planted error: a column added on the provider after the capture was made stops the table.
    await waitFor(async () => (await page.getAttribute('tr[data-table="public.notes"] td[data-state]', "data-state").catch(() => null)) === "ok", {
      timeoutMs: 60_000,
      what: "public.notes ok on the page",
    });
    await onBoth("alter table public.notes add column extra text");
    await job.provider.query("insert into public.notes values (2, 'second', 'x')");
    const error = await waitFor(() => text('li[data-error="public.notes"]'), { timeoutMs: 60_000, what: "the error of public.notes on the page" });
    expect(error).toContain("columns changed on the provider since the capture was created");
    expect(error).toContain(`londiste ${job.conf} repair public.notes --apply`);
    expect(await page.getAttribute('tr[data-table="public.notes"] td[data-state]', "data-state")).toBe("error");
    expect(await text('#jobs-table tr[data-job="dashweb_job"] td:nth-of-type(5)')).toBe("1");

    // A copy shown as a progress bar: the subscriber's column is a domain whose check sleeps, so
    // the rows flow slowly enough for the copy worker to report progress (every ~2 s) a few times.
    await job.subscriber.query(`
      create function public.slow_ok(text) returns boolean language plpgsql as $$ begin perform pg_sleep(0.002); return true; end $$;
      create domain public.slow_text as text check (public.slow_ok(value));
      create table public.events (id bigint primary key, kind text, payload public.slow_text)`);
    await job.provider.query("create table public.events (id bigint primary key, kind text, payload text)");
    await job.provider.query(`insert into public.events select g, 'k' || g % 7, repeat('x', 2000) from generate_series(1, ${SLOW_ROWS}) g`);
    await job.provider.query("analyze public.events");
    expectOk(await job.londiste("provider", "add", "public.events"));
    expectOk(await job.londiste("subscriber", "add", "public.events"));
    const bar = '[data-copy="public.events"] progress';
    await waitFor(async () => Number(await page.getAttribute(bar, "value").catch(() => null)) > 0, { timeoutMs: 120_000, what: "a progress bar of the copy of public.events" });
    expect(await page.getAttribute(bar, "aria-label")).toMatch(new RegExp(`^public\\.events: \\d+ rows of about ${SLOW_ROWS} at \\d+\\.\\d MB/s`));
    expect(await text('[data-copy="public.events"] .copy-text')).toMatch(/^\d+(\.\d)?%: \d+ rows of about \d+ at \d+\.\d MB\/s.*\(.+\)$/);
    expect(await text('#jobs-table tr[data-job="dashweb_job"] td:nth-of-type(4)')).toBe("1");
    // The copy worker says what it copies when pinged.
    await waitFor(async () => (await text("table.services tbody"))?.includes("copying public.events"), { timeoutMs: 30_000, what: "the copy worker listed as copying public.events" });

    const dir = join(REPO_ROOT, "test-results");
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: join(dir, "dashboard.png"), fullPage: true });
    if (process.env.SAVE_SCREENSHOT === "1") await page.screenshot({ path: join(REPO_ROOT, "docs", "img", "dashboard.png"), fullPage: true });

    // The copy ends, and the bar with it.
    await waitFor(async () => (await page.getAttribute('tr[data-table="public.events"] td[data-state]', "data-state").catch(() => null)) === "ok", {
      timeoutMs: 120_000,
      what: "public.events ok on the page",
    });
    expect(await page.$(bar)).toBeNull();
  });
});
