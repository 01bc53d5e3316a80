/**
 * `londiste CONFIG top`: a full-screen view of the job that refreshes in
 * place, like top(1): lag with a sparkline, the services that answer, each
 * table's state, copy progress bars and errors. Everything comes from NATS
 * (no database access, so the observer role is enough): `status` and
 * `ping` requests every POLL_MS, the JetStream state changes (last one of
 * each table, then live), copy progress reports and the queue's tick
 * notices. What it keeps and shows is shaped in top-state.ts and drawn by
 * top-render.ts; this module only talks to NATS and the terminal.
 *
 * On a terminal it uses the alternate screen and hides the cursor; `q`,
 * Ctrl-C, SIGINT/SIGTERM/SIGHUP end it and give the terminal back as it
 * was. When stdout is not a terminal it prints a plain snapshot every
 * POLL_MS instead (like `top -b`), each after a `--- time` line.
 */
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/nats-core";
import { errors } from "@nats-io/nats-core";
import type { Reply } from "../../shared/bus/replies.ts";
import { tickNoticeSubject, type TickNotice } from "../../shared/bus/subjects.ts";
import { invocation, shellWord } from "../../shared/cli/invocation.ts";
import { connectForCli } from "../../shared/cli/request.ts";
import { natsSettingsFrom } from "../../shared/config/common-keys.ts";
import { loadLondisteConfig, londisteSubjects } from "../../shared/config/londiste.ts";
import { type StateChangeMessage, stateStreamName } from "../../shared/londiste/state-events.ts";
import { renderTop } from "./top-render.ts";
import {
  type CopyReport,
  initialState,
  type PingReply,
  recordCopyProgress,
  recordServices,
  recordStatus,
  recordStatusProblem,
  recordTick,
  recordTransition,
  shapeView,
  type StatusReply,
  type TopState,
} from "./top-state.ts";

/** How often the status and the services are asked for (and the plain output printed). */
export const POLL_MS = 2000;
/** Redraws for live messages are at most this often. */
const REDRAW_MS = 200;

const ALT_SCREEN_ON = "\x1b[?1049h";
const ALT_SCREEN_OFF = "\x1b[?1049l";
const CURSOR_HIDE = "\x1b[?25l";
const CURSOR_SHOW = "\x1b[?25h";
const HOME = "\x1b[H";
const CLEAR_LINE_END = "\x1b[K";
const CLEAR_BELOW = "\x1b[J";

export async function runTop(configPath: string): Promise<number> {
  const config = loadLondisteConfig(configPath);
  const nats = natsSettingsFrom(config.values, `londiste top ${config.jobName}`);
  let nc: NatsConnection;
  try {
    nc = await connectForCli(nats, config.commandTimeoutMs, true);
  } catch (error) {
    process.stderr.write(`londiste: ${(error as Error).message}\n`);
    return 3;
  }
  const subjects = londisteSubjects(config.subjectPrefix, config.jobName);
  const state = initialState(config.jobName, config.queue);
  const fix = { londiste: `${invocation("londiste")} ${shellWord(configPath)}` };
  const stop = new AbortController();
  const screen = process.stdout.isTTY ? new FullScreen(() => stop.abort()) : new PlainOutput(() => stop.abort());
  const draw = () => screen.draw(state, fix);

  const subscriptions: Subscription[] = [];
  const onSignal = () => stop.abort();
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) process.once(s, onSignal);
  try {
    screen.open();
    if (screen instanceof FullScreen) draw();
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === "disconnect") state.connected = false;
        else if (s.type === "reconnect") state.connected = true;
        screen.changed(draw);
      }
    })();
    subscriptions.push(
      nc.subscribe(`${subjects.commandPrefix}.copy.progress.>`, {
        callback: (error, msg) => {
          if (error) return;
          const report = parse<CopyReport>(msg.string());
          if (report && typeof report.table === "string") recordCopyProgress(state, report, Date.now());
          screen.changed(draw);
        },
      }),
      nc.subscribe(tickNoticeSubject(config.subjectPrefix, config.queue), {
        callback: (error, msg) => {
          if (error) return;
          const notice = parse<TickNotice>(msg.string());
          // Queue names reduced to one token may collide: only this queue's ticks.
          if (notice && notice.queue === config.queue) recordTick(state, notice.tick_id, Date.now());
          screen.changed(draw);
        },
      }),
    );
    void followTransitions(nc, config.subjectPrefix, config.jobName, state, stop.signal, () => screen.changed(draw));
    let round = 0;
    while (!stop.signal.aborted) {
      await Promise.all([
        pollStatus(nc, subjects.command("status"), state, config.commandTimeoutMs),
        // Services change seldom: every other round.
        round % 2 === 0 ? pollServices(nc, subjects.command("ping"), state) : Promise.resolve(),
      ]);
      round++;
      if (stop.signal.aborted) break;
      draw();
      await abortableSleep(POLL_MS, stop.signal);
    }
    return 0;
  } finally {
    for (const s of signals) process.off(s, onSignal);
    for (const s of subscriptions) s.unsubscribe();
    screen.close();
    await nc.close().catch(() => {});
  }
}

function parse<T>(text: string): T | null {
  try {
    return JSON.parse(text) as T;
  } catch {
    return null;
  }
}

async function pollStatus(nc: NatsConnection, subject: string, state: TopState, timeoutMs: number): Promise<void> {
  try {
    const msg = await nc.request(subject, "{}", { timeout: Math.min(timeoutMs, 5000) });
    const reply = parse<Reply<StatusReply>>(msg.string());
    if (!reply) recordStatusProblem(state, "unreadable status reply");
    else if ("error" in reply) recordStatusProblem(state, `${reply.error.code}: ${reply.error.message}`);
    else recordStatus(state, reply.result, Date.now());
  } catch (error) {
    const noResponders =
      error instanceof errors.NoRespondersError || (error instanceof errors.RequestError && error.cause instanceof errors.NoRespondersError);
    recordStatusProblem(state, noResponders ? "no replay service of the job is running" : (error as Error).message);
  }
}

async function pollServices(nc: NatsConnection, subject: string, state: TopState): Promise<void> {
  const seen: PingReply[] = [];
  try {
    const replies = await nc.requestMany(subject, "{}", { strategy: "stall", stall: 300, maxWait: 1500 });
    for await (const msg of replies) {
      const reply = parse<Reply<PingReply>>(msg.string());
      if (reply && "result" in reply && typeof reply.result?.instance === "string") seen.push(reply.result);
    }
  } catch {
    // nobody answered: none runs
  }
  recordServices(state, seen);
}

/**
 * The last state change of each table, then every new one, from the job's
 * stream. The stream is made by replay: until it exists, look again every
 * poll (top creates nothing, so it works with read-only permissions).
 */
async function followTransitions(nc: NatsConnection, prefix: string, job: string, state: TopState, signal: AbortSignal, changed: () => void) {
  const name = stateStreamName(prefix, job);
  while (!signal.aborted) {
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.info(name);
      const consumer = await jetstream(nc).consumers.get(name, {
        deliver_policy: DeliverPolicy.LastPerSubject,
        // One subject as a string: sent as filter_subject, which NATS 2.9 takes (a list needs 2.10).
        filter_subjects: `${londisteSubjects(prefix, job).commandPrefix}.events.>`,
      });
      const messages = await consumer.consume();
      const close = () => void messages.close();
      signal.addEventListener("abort", close, { once: true });
      if (signal.aborted) close();
      for await (const msg of messages) {
        const change = parse<StateChangeMessage>(msg.string());
        if (change && typeof change.table === "string") recordTransition(state, change);
        changed();
      }
      signal.removeEventListener("abort", close);
    } catch {
      // no stream yet, or no permission to read it: the status replies still show the states
    }
    await abortableSleep(POLL_MS, signal);
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

interface Screen {
  open(): void;
  draw(state: TopState, fix: { londiste: string }): void;
  /** Something arrived: redraw soon (the full screen), or at the next poll (plain output). */
  changed(draw: () => void): void;
  close(): void;
}

/** The terminal: alternate screen, no cursor, keys read raw; given back as it was on close (also on a crash). */
class FullScreen implements Screen {
  private pending: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly restore = () => this.close();
  private readonly onKey = (data: Buffer) => {
    const key = data.toString("utf8");
    // q, Q, or Ctrl-C (raw mode delivers it as a byte, not as SIGINT)
    if (key === "q" || key === "Q" || key.includes("\x03")) this.quit();
  };
  private readonly onResize = () => this.lastDraw?.();
  private lastDraw: (() => void) | undefined;

  constructor(private readonly quit: () => void) {}

  open(): void {
    process.stdout.write(ALT_SCREEN_ON + CURSOR_HIDE + HOME + CLEAR_BELOW);
    process.once("exit", this.restore);
    if (process.stdin.isTTY) {
      process.stdin.setRawMode(true);
      process.stdin.on("data", this.onKey);
      process.stdin.resume();
    }
    process.stdout.on("resize", this.onResize);
  }

  draw(state: TopState, fix: { londiste: string }): void {
    if (this.closed) return;
    this.lastDraw = () => this.draw(state, fix);
    const view = shapeView(state, Date.now(), fix);
    const lines = renderTop(view, { width: process.stdout.columns, height: process.stdout.rows, keys: true });
    // Overwrite in place (no clear first): no flicker on slow links.
    process.stdout.write(HOME + lines.map((l) => l + CLEAR_LINE_END).join("\r\n") + CLEAR_BELOW);
  }

  changed(draw: () => void): void {
    if (this.pending || this.closed) return;
    this.pending = setTimeout(() => {
      this.pending = undefined;
      draw();
    }, REDRAW_MS);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.pending) clearTimeout(this.pending);
    process.off("exit", this.restore);
    process.stdout.off("resize", this.onResize);
    if (process.stdin.isTTY) {
      process.stdin.off("data", this.onKey);
      process.stdin.setRawMode(false);
      process.stdin.pause();
    }
    process.stdout.write(CURSOR_SHOW + ALT_SCREEN_OFF);
  }
}

/** Not a terminal (a pipe, a file, a log): a plain snapshot each poll; stops quietly when the reader goes away. */
class PlainOutput implements Screen {
  private outputClosed = false;
  private readonly onError = (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
    this.outputClosed = true;
    this.quit();
  };

  constructor(private readonly quit: () => void) {}

  open(): void {
    process.stdout.on("error", this.onError);
  }

  draw(state: TopState, fix: { londiste: string }): void {
    if (this.outputClosed) return;
    const now = Date.now();
    const lines = renderTop(shapeView(state, now, fix));
    process.stdout.write(`--- ${new Date(now).toISOString()}\n${lines.join("\n")}\n\n`);
  }

  changed(): void {
    // the next snapshot shows it
  }

  close(): void {
    process.stdout.off("error", this.onError);
  }
}
