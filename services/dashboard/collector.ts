/**
 * The dashboard's side of NATS: everything it shows comes from here, and
 * nothing from a database, so it runs with the observer role
 * (docs/security-nats.md). It
 *  - finds the jobs under the subject prefix from the `$SRV.INFO` replies
 *    of the replay services (plus the job of its own config), and the
 *    ticker jobs from those of the tickers (their status lists their
 *    queues, their ping their instances),
 *  - asks each job's replay for `status` (lag, tables, errors) and pings
 *    the job's services, every poll,
 *  - follows each job's JetStream stream of state changes (the kept
 *    history first, then live),
 *  - listens to copy progress and tick notices.
 * Each message goes into the pure model (shared/londiste/status-view.ts);
 * `changed` tells the web side to push a new view.
 */
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { errors, type NatsConnection } from "@nats-io/nats-core";
import { stateStreamName } from "../../shared/londiste/state-events.ts";
import {
  applyCopyProgress,
  applyPings,
  applyStateChange,
  applyStatus,
  applyStatusProblem,
  applyTick,
  applyTicker,
  type CopyProgress,
  type DashboardModel,
  noteJob,
  type PingReply,
  type StateChange,
  type StatusReply,
  type TickNotice,
} from "../../shared/londiste/status-view.ts";
import type { Logger } from "../../shared/log.ts";
import { permissionViolation } from "../../shared/bus/permissions.ts";
import { sleep } from "../../shared/sleep.ts";

export interface CollectorOptions {
  prefix: string;
  /** The job of the dashboard's config: shown even before any of its services answers. */
  job: string;
  pollMs: number;
  requestTimeoutMs: number;
  log: Logger;
  changed: () => void;
  signal: AbortSignal;
}

/** Job names are one subject token (letters, digits, _ and -). */
const JOB_NAME = /^[A-Za-z0-9_-]+$/;

export class Collector {
  private readonly followed = new Set<string>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly model: DashboardModel,
    private readonly options: CollectorOptions,
  ) {}

  start(): void {
    const { prefix } = this.options;
    noteJob(this.model, this.options.job);
    const londiste = `${prefix}.londiste.`;
    this.nc.subscribe(`${londiste}*.copy.progress.>`, {
      callback: (_err, msg) => {
        const job = msg.subject.slice(londiste.length).split(".")[0]!;
        const progress = parse<CopyProgress>(msg.data);
        if (!progress || typeof progress.table !== "string") return;
        applyCopyProgress(this.model, job, progress, Date.now());
        this.options.changed();
      },
    });
    this.nc.subscribe(`${prefix}.pgq.tick.>`, {
      callback: (_err, msg) => {
        const notice = parse<TickNotice>(msg.data);
        if (!notice || typeof notice.queue !== "string") return;
        applyTick(this.model, notice);
        this.options.changed();
      },
    });
    void this.pollLoop();
  }

  private async pollLoop(): Promise<void> {
    const { signal, pollMs } = this.options;
    while (!signal.aborted) {
      const [found, tickers] = await Promise.all([this.discover("londiste-replay", "londiste"), this.discover("pgqadm-ticker", "pgqadm")]);
      const jobs = new Set([this.options.job, ...found]);
      await Promise.all([...[...jobs].map((job) => this.pollJob(job)), ...[...new Set(tickers)].map((t) => this.pollTicker(t))]);
      for (const job of jobs) if (!this.followed.has(job)) this.follow(job);
      this.options.changed();
      await sleep(pollMs, signal);
    }
  }

  /** The jobs whose `service` (londiste-replay, pgqadm-ticker) answers `$SRV.INFO` with endpoints under `<prefix>.<tool>.<job>.`. */
  private async discover(service: string, tool: string): Promise<string[]> {
    const jobs: string[] = [];
    const under = `${this.options.prefix}.${tool}.`;
    try {
      const replies = await this.nc.requestMany(`$SRV.INFO.${service}`, "", { strategy: "stall", stall: 300, maxWait: this.options.requestTimeoutMs });
      for await (const msg of replies) {
        const info = parse<{ metadata?: { job?: string }; endpoints?: Array<{ subject?: string }> }>(msg.data);
        const job = info?.metadata?.job;
        if (job && JOB_NAME.test(job) && info?.endpoints?.some((e) => e.subject?.startsWith(`${under}${job}.`))) jobs.push(job);
      }
    } catch (error) {
      if (!isNoResponders(error)) this.options.log.debug({ err: error }, "service discovery failed");
    }
    return jobs;
  }

  /** A ticker job: the queues of its database (status) and its instances (ping). */
  private async pollTicker(tickerJob: string): Promise<void> {
    const base = `${this.options.prefix}.pgqadm.${tickerJob}`;
    const [queues, replies] = await Promise.all([
      this.request(`${base}.status`).then(
        (reply) => (reply && "result" in reply ? ((reply.result as { queues?: Array<{ queue: string }> }).queues ?? []).map((q) => q.queue) : undefined),
        () => undefined,
      ),
      this.pingAll(`${base}.ping`),
    ]);
    applyTicker(this.model, tickerJob, queues, replies, Date.now());
  }

  /** Every instance's reply to a ping (they all answer). */
  private async pingAll(subject: string): Promise<PingReply[]> {
    const answers: PingReply[] = [];
    try {
      const replies = await this.nc.requestMany(subject, "{}", { strategy: "stall", stall: 300, maxWait: this.options.requestTimeoutMs });
      for await (const msg of replies) {
        const reply = parse<{ result?: PingReply }>(msg.data);
        if (reply?.result && typeof reply.result.instance === "string") answers.push(reply.result);
      }
    } catch (error) {
      if (!isNoResponders(error)) this.options.log.debug({ err: error, subject }, "ping failed");
    }
    return answers;
  }

  private async pollJob(job: string): Promise<void> {
    const base = `${this.options.prefix}.londiste.${job}`;
    const status = this.request(`${base}.status`).then(
      (reply) => {
        if (reply && "result" in reply) applyStatus(this.model, job, reply.result as StatusReply, Date.now());
        else applyStatusProblem(this.model, job, reply ? `${reply.error.code}: ${reply.error.message}` : "no reply", Date.now());
      },
      (error: unknown) => applyStatusProblem(this.model, job, describe(error, `${base}.status`), Date.now()),
    );
    const ping = this.pingAll(`${base}.ping`).then((answers) => applyPings(this.model, job, answers, Date.now()));
    await Promise.all([status, ping]);
  }

  private async request(subject: string): Promise<{ result: unknown } | { error: { code: string; message: string } } | undefined> {
    const msg = await this.nc.request(subject, "{}", { timeout: this.options.requestTimeoutMs });
    return parse(msg.data);
  }

  /**
   * Follows the job's stream: every kept change (the path of each table
   * and when it got where it is), then every new one. Waits for the stream when replay has
   * not made it yet; an ordered consumer resumes by itself after a NATS
   * outage.
   */
  private follow(job: string): void {
    this.followed.add(job);
    const { prefix, signal, log } = this.options;
    const stream = stateStreamName(prefix, job);
    let said: string | undefined;
    void (async () => {
      while (!signal.aborted) {
        try {
          await (await jetstreamManager(this.nc)).streams.info(stream);
          const consumer = await jetstream(this.nc).consumers.get(stream, {
            // The whole kept history (a handful of changes per table and copy): the path each table took.
            deliver_policy: DeliverPolicy.All,
          });
          const messages = await consumer.consume();
          const stop = () => void messages.close();
          signal.addEventListener("abort", stop, { once: true });
          try {
            for await (const msg of messages) {
              const change = parse<StateChange>(msg.data);
              if (!change || typeof change.table !== "string") continue;
              applyStateChange(this.model, { ...change, job });
              this.options.changed();
            }
          } finally {
            signal.removeEventListener("abort", stop);
          }
        } catch (error) {
          if (signal.aborted) return;
          const violation = permissionViolation(error);
          const problem = violation ? `following the state changes of ${job}: NATS refused ${violation.subject}` : undefined;
          // Said once, not at every retry.
          if (problem && problem !== said) log.error({ job }, problem);
          else if (!problem) log.debug({ err: error, job }, "state stream not followed yet; retrying");
          said = problem;
        }
        await sleep(this.options.pollMs, signal);
      }
    })();
  }
}

function parse<T>(data: Uint8Array): T | undefined {
  try {
    return JSON.parse(new TextDecoder().decode(data)) as T;
  } catch {
    return undefined;
  }
}

function isNoResponders(error: unknown): boolean {
  return error instanceof errors.NoRespondersError || (error instanceof errors.RequestError && error.cause instanceof errors.NoRespondersError);
}

function describe(error: unknown, subject: string): string {
  const violation = permissionViolation(error);
  if (violation) return `NATS does not permit ${violation.subject} to this user`;
  if (isNoResponders(error)) return `no replay of the job answers on ${subject}`;
  if (error instanceof errors.TimeoutError || error instanceof errors.RequestError) return `no reply on ${subject} in time`;
  return (error as Error).message || String(error);
}
