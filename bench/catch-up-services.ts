/**
 * Service-level catch-up (target P2s in docs/benchmarks.md), as a user
 * runs the product: the ticker (`pgqadm CONF ticker`, default loop_delay
 * and queue settings: "normal ticking") and replay (`londiste CONF
 * replay`) as their own processes (bench/copy-services.ts), a provider and
 * a subscriber database on the bench's server, a 100k-row table of
 * pgbench_accounts' shape added on both sides (`provider add`,
 * `subscriber add --expect-sync`). Replay is stopped, the backlog is
 * written on the provider by the producers of the single-batch workloads
 * (same generator, 4 clients) while the ticker ticks, the bench waits for
 * a tick that covers every event, then starts replay again and times it
 * until the subscriber's recorded tick reaches that tick (the subscriber
 * then equals the provider, which is checked). The replay process logs,
 * at debug level, where each batch's time went (the phases of
 * shared/londiste/serial-batch.ts); the bench sums them.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type pg from "pg";
import { connect, log } from "./lib.ts";
import { accountsTableSql } from "./londiste-trigger.ts";
import { type LogLine, londisteCli, ServiceChild } from "./copy-services.ts";

export interface ServiceCatchUp {
  changes: number;
  /** From starting the replay process to the subscriber at the last tick. */
  seconds: number;
  /** Of `seconds`, until replay logged that it is active (process start-up, connections, lock). */
  startupSeconds: number;
  rowsPerSecond: number;
  /** rows/s counted from replay's "active" log line. */
  rowsPerSecondActive: number;
  batches: number;
  ticks: number;
  /** Seconds per phase, summed over the batches (from replay's debug log). */
  phases: Record<string, number>;
  produceSeconds: number;
  /** Replay's peak RSS (MB), from /proc while it ran. */
  peakRssMB: number | null;
}

async function checksum(db: pg.ClientBase, table: string): Promise<string> {
  const { rows } = await db.query<{ sum: string; n: number }>(
    `select md5(string_agg(t::text, ',' order by aid)) as sum, count(*)::int as n from ${table} t`,
  );
  return `${rows[0]!.n}:${rows[0]!.sum}`;
}

async function waitUntil(what: string, timeoutMs: number, intervalMs: number, probe: () => Promise<boolean>): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** VmHWM of a process (peak RSS, MB), null when it is gone. */
function peakRss(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /VmHWM:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

async function lastTick(prov: pg.ClientBase, queue: string): Promise<{ tick: number; covers: boolean }> {
  const { rows } = await prov.query<{ t: string; covers: boolean }>(
    `select t.tick_id::text as t, t.tick_event_seq >= pgq.seq_getval(q.queue_event_seq) as covers
       from pgq.queue q join pgq.tick t on t.tick_queue = q.queue_id
      where q.queue_name = $1 order by t.tick_id desc limit 1`,
    [queue],
  );
  return { tick: Number(rows[0]!.t), covers: rows[0]!.covers };
}

export async function serviceCatchUp(
  createDatabase: (suffix: string) => Promise<string>,
  spec: {
    id: string;
    rows: number;
    total: number;
    produce: (url: string, table: string, n: number) => Promise<number>;
    /** Extra [londiste] settings of the replay process. */
    replaySettings?: string[];
  },
): Promise<ServiceCatchUp> {
  const providerUrl = await createDatabase(`svc_${spec.id}_p`);
  const subscriberUrl = await createDatabase(`svc_${spec.id}_s`);
  const queue = `bench_svc_${spec.id}`;
  const job = `bench_svc_${spec.id}`;
  const table = `public.svc_${spec.id}`;
  const dir = mkdtempSync(join(tmpdir(), "pgq-bench-svc-"));
  const services: ServiceChild[] = [];
  const prov = await connect(providerUrl);
  const sub = await connect(subscriberUrl);
  try {
    const natsUrl = process.env.NATS_URL || "nats://127.0.0.1:4222";
    const subjectPrefix = `bench${Math.floor(Math.random() * 1e9)}`;
    const tickerConf = join(dir, "ticker.ini");
    writeFileSync(tickerConf, ["[pgqadm]", `job_name = ${job}_ticker`, `db = ${providerUrl}`, `nats_url = ${natsUrl}`, `subject_prefix = ${subjectPrefix}`, ""].join("\n"));
    const conf = join(dir, "londiste.ini");
    writeFileSync(
      conf,
      [
        "[londiste]",
        `job_name = ${job}`,
        `provider_db = ${providerUrl}`,
        `subscriber_db = ${subscriberUrl}`,
        `pgq_queue_name = ${queue}`,
        `nats_url = ${natsUrl}`,
        `subject_prefix = ${subjectPrefix}`,
        "log_level = debug",
        ...(spec.replaySettings ?? []),
        "",
      ].join("\n"),
    );
    for (const [db, url] of [
      [prov, providerUrl],
      [sub, subscriberUrl],
    ] as const) {
      await db.query(`alter database "${new URL(url).pathname.slice(1)}" set synchronous_commit = off`);
      await db.query(accountsTableSql(table, spec.rows));
      await db.query(`vacuum analyze ${table}`);
    }
    services.push(new ServiceChild("ticker", ["pgqadm", tickerConf, "ticker"]));
    let replay = new ServiceChild("replay", ["londiste", conf, "replay"]);
    services.push(replay);
    await replay.waitForLog("active: this instance replays the job", 60_000);
    await londisteCli(conf, "provider", "install");
    await londisteCli(conf, "subscriber", "install");
    await londisteCli(conf, "provider", "add", table);
    await londisteCli(conf, "subscriber", "add", table, "--expect-sync");
    // Replay registered and standing at a tick: then stop it.
    await waitUntil("replay to register and record a tick", 60_000, 50, async () => {
      const { rows } = await sub.query<{ t: string | null }>("select londiste.get_last_tick($1) as t", [job]);
      return rows[0]!.t !== null;
    });
    await replay.kill();

    log(`P2s ${spec.id}: replay stopped; producing ${spec.total.toLocaleString("en-US")} transactions under normal ticking`);
    const produceSeconds = await spec.produce(providerUrl, table, spec.total);
    const { rows: cnt } = await prov.query<{ n: number }>("select count(*)::int as n from pgq.event_template where ev_extra1 = $1", [table]);
    const changes = cnt[0]!.n;
    let target = 0;
    await waitUntil("a tick covering the backlog", 60_000, 100, async () => {
      const t = await lastTick(prov, queue);
      target = t.tick;
      return t.covers;
    });
    const { rows: from } = await sub.query<{ t: string }>("select londiste.get_last_tick($1)::text as t", [job]);
    const ticks = target - Number(from[0]!.t);
    await sub.query("checkpoint");

    log(`P2s ${spec.id}: ${changes.toLocaleString("en-US")} changes over ${ticks} ticks; starting replay`);
    const start = performance.now();
    // BENCH_REPLAY_PROFILE=DIR: a CPU profile of the catching-up replay process (node --cpu-prof) into DIR.
    const profile = process.env.BENCH_REPLAY_PROFILE;
    replay = new ServiceChild("replay", ["londiste", conf, "replay"], profile ? ["--cpu-prof", `--cpu-prof-dir=${profile}`] : []);
    services.push(replay);
    let peak: number | null = null;
    let activeAt: number | null = null;
    await waitUntil("replay to catch up", 60 * 60_000, 10, async () => {
      peak = Math.max(peak ?? 0, peakRss(replay.child.pid) ?? 0);
      if (activeAt === null && replay.lines.some((l) => l.msg === "active: this instance replays the job")) activeAt = performance.now();
      if (replay.child.exitCode !== null) throw new Error(`replay exited (${replay.child.exitCode}):\n${replay.tail(30)}`);
      const { rows } = await sub.query<{ t: string | null }>("select londiste.get_last_tick($1)::text as t", [job]);
      return rows[0]!.t !== null && Number(rows[0]!.t) >= target;
    });
    const seconds = (performance.now() - start) / 1000;
    peak = Math.max(peak ?? 0, peakRss(replay.child.pid) ?? 0);
    const [p, s] = await Promise.all([checksum(prov, table), checksum(sub, table)]);
    if (p !== s) throw new Error(`P2s ${spec.id}: the subscriber table differs from the provider's (${s} vs ${p})`);
    const startupSeconds = activeAt === null ? 0 : (activeAt - start) / 1000;
    const batchLines = replay.lines.filter((l: LogLine) => l.msg === "batch done");
    const phases: Record<string, number> = {};
    for (const l of batchLines) {
      for (const [k, v] of Object.entries((l.phases as Record<string, number> | undefined) ?? {})) phases[k] = (phases[k] ?? 0) + v / 1000;
    }
    for (const k of Object.keys(phases)) phases[k] = Math.round(phases[k]! * 1000) / 1000;
    log(
      `P2s ${spec.id}: caught up in ${seconds.toFixed(2)} s (${startupSeconds.toFixed(2)} s of it start-up), ` +
        `${batchLines.length} batches; phases ${JSON.stringify(phases)}; peak RSS ${peak?.toFixed(0)} MB; subscriber = provider`,
    );
    return {
      changes,
      seconds,
      startupSeconds,
      rowsPerSecond: changes / seconds,
      rowsPerSecondActive: changes / (seconds - startupSeconds),
      batches: batchLines.length,
      ticks,
      phases,
      produceSeconds,
      peakRssMB: peak,
    };
  } catch (error) {
    for (const s of services) log(`----- ${s.label} output (last lines) -----\n${s.tail(40)}`);
    throw error;
  } finally {
    await Promise.all(services.map((s) => s.kill()));
    await prov.end();
    await sub.end();
    rmSync(dir, { recursive: true, force: true });
  }
}
