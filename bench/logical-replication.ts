/**
 * The same-run baseline of the replay targets (P2, P2s, P3 in
 * docs/benchmarks.md): PostgreSQL's native logical replication catching up
 * a backlog. The shared server runs wal_level = replica, so the publisher
 * is a private cluster this module starts (initdb into a temporary folder,
 * a free port, wal_level = logical) and always stops and removes again,
 * also on failure; the subscriber is a throwaway database on the bench's
 * own server, the same server replay applies to.
 *
 * A catch-up: the table (pgbench_accounts' shape, 100k rows) filled alike
 * on both sides, a publication of it and of a one-row marker table, a
 * subscription created disabled without copying data (its slot is made at
 * once, so it keeps the WAL of everything written after), the backlog
 * written on the publisher by the producers replay's workloads use (same
 * generator and seed, 4 clients), a marker row inserted last, then the
 * subscription enabled: the time from the enable to the marker being
 * visible on the subscriber (LR applies in commit order, so the marker
 * comes last). Afterwards the subscriber table must equal the publisher's.
 */
import type pg from "pg";
import { findPostgresBin, type LocalPostgres, startLocalPostgres } from "../test/support/local-postgres.ts";
import { connect, log, urlForDatabase } from "./lib.ts";
import { accountsTableSql } from "./londiste-trigger.ts";

export interface LrCatchUp {
  changes: number;
  /** From ALTER SUBSCRIPTION ... ENABLE to the marker on the subscriber. */
  seconds: number;
  rowsPerSecond: number;
  produceSeconds: number;
}

/** A private publisher cluster; stop() removes it. */
export async function startPublisher(): Promise<LocalPostgres> {
  const bin = await findPostgresBin();
  if (!bin) throw new Error("the logical replication baseline needs PostgreSQL server binaries (initdb, pg_ctl), e.g. /usr/lib/postgresql/15/bin");
  return startLocalPostgres(bin);
}

async function checksum(db: pg.ClientBase, table: string): Promise<string> {
  const { rows } = await db.query<{ sum: string; n: number }>(
    `select md5(string_agg(t::text, ',' order by aid)) as sum, count(*)::int as n from ${table} t`,
  );
  return `${rows[0]!.n}:${rows[0]!.sum}`;
}

/** Drops the subscription without the publisher (its slot goes with the private cluster). */
async function dropSubscription(sub: pg.ClientBase, name: string): Promise<void> {
  const { rows } = await sub.query("select 1 from pg_subscription where subname = $1", [name]);
  if (rows.length === 0) return;
  await sub.query(`alter subscription ${name} disable`);
  await sub.query(`alter subscription ${name} set (slot_name = none)`);
  await sub.query(`drop subscription ${name}`);
}

/**
 * LR catching up `total` transactions made by `produce` on a private publisher;
 * the subscriber is a database made by `createDatabase` on the bench's server.
 */
export async function lrCatchUp(
  createDatabase: (suffix: string) => Promise<string>,
  spec: { id: string; rows: number; total: number; produce: (url: string, table: string, n: number) => Promise<number> },
): Promise<LrCatchUp> {
  const table = `lr_${spec.id}`;
  const subName = `bench_lr_${spec.id}`;
  const subscriberUrl = await createDatabase(`lr_${spec.id}`);
  let cluster: LocalPostgres | undefined;
  let sub: pg.Client | undefined;
  let pub: pg.Client | undefined;
  try {
    log(`LR ${spec.id}: starting a private publisher cluster (wal_level = logical)`);
    cluster = await startPublisher();
    const admin = await connect(cluster.url, false);
    await admin.query("create database lr_pub");
    await admin.end();
    const publisherUrl = urlForDatabase(cluster.url, "lr_pub");
    pub = await connect(publisherUrl);
    sub = await connect(subscriberUrl);
    for (const db of [pub, sub]) {
      await db.query(accountsTableSql(table, spec.rows));
      await db.query("create table lr_marker (id int primary key)");
      await db.query(`vacuum analyze ${table}`);
    }
    await pub.query(`create publication bench_pub for table ${table}, lr_marker`);
    const conninfo = `host=127.0.0.1 port=${cluster.port} dbname=lr_pub user=postgres`;
    await sub.query(`create subscription ${subName} connection '${conninfo}' publication bench_pub with (copy_data = false, enabled = false)`);

    log(`LR ${spec.id}: producing ${spec.total.toLocaleString("en-US")} transactions on the publisher`);
    const produceSeconds = await spec.produce(publisherUrl, table, spec.total);
    await pub.query("insert into lr_marker values (1)");
    await sub.query("checkpoint");

    const start = performance.now();
    await sub.query(`alter subscription ${subName} enable`);
    for (;;) {
      const { rows } = await sub.query("select 1 from lr_marker");
      if (rows.length > 0) break;
      const { rows: errs } = await sub.query<{ n: string }>(
        "select coalesce(sum(apply_error_count), 0)::text as n from pg_stat_subscription_stats where subname = $1",
        [subName],
      );
      if (Number(errs[0]!.n) > 0) throw new Error(`LR ${spec.id}: the subscription's apply worker failed (see the server log)`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const seconds = (performance.now() - start) / 1000;
    const [p, s] = await Promise.all([checksum(pub, table), checksum(sub, table)]);
    if (p !== s) throw new Error(`LR ${spec.id}: the subscriber table differs from the publisher's (${s} vs ${p})`);
    log(`LR ${spec.id}: caught up ${spec.total.toLocaleString("en-US")} transactions in ${seconds.toFixed(2)} s; subscriber = publisher`);
    return { changes: spec.total, seconds, rowsPerSecond: spec.total / seconds, produceSeconds };
  } finally {
    if (sub) {
      await dropSubscription(sub, subName).catch((e: unknown) => log(`LR ${spec.id}: dropping the subscription failed: ${(e as Error).message}`));
      await sub.end();
    }
    await pub?.end().catch(() => {});
    await cluster?.stop();
  }
}
