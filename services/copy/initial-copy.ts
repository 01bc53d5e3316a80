/**
 * State in-copy: the table's rows, copied under a snapshot that fits the
 * queue (docs/protocols.md, "Initial copy and the handover to replay",
 * with the fixes of docs/differences-from-skytools.md, "The copy and the
 * handover").
 *
 *  1. Under the table's row lock (lease checked), the copy consumer is
 *     registered afresh at the newest tick R, before the snapshot: every
 *     change not in the snapshot is in one of its batches.
 *  2. ONE subscriber transaction, replica role: every provider column must
 *     exist on the subscriber table; its indexes and constraints are set
 *     aside (dest-objects.ts); TRUNCATE unless skip_truncate.
 *  3. On the provider, REPEATABLE READ READ ONLY, whose first statement
 *     reads the snapshot S (asserting the isolation level: a psycopg change
 *     once made the Skytools copy run in READ COMMITTED and lose rows, see
 *     docs/differences-from-skytools.md, "The copy and the handover"); the
 *     rows stream from `COPY (select ...) TO STDOUT` into
 *     `COPY ... FROM STDIN`.
 *  4. Indexes and constraints recreated, a fence tick F taken after S
 *     (asked for as soon as the rows are in, while the indexes are
 *     rebuilt), the copy consumer's recorded tick cleared, and
 *     COPY.DONE {S, F} → catching-up, committed with the rows.
 *  5. ANALYZE of the table after the commit, in the background on the
 *     copy's connection: the catch-up does not wait for it.
 * Nothing of it is visible until that commit; a failure or a crash leaves
 * the table as it was, still in-copy, for the next try.
 */
import pg from "pg";
import { ConnectionLost, withPrivilegeHint } from "../../shared/db/failure.ts";
import { ownRows, quoteIdent } from "../../shared/db/sql-text.ts";
import { setStatements, VALUE_TEXT_SETTINGS } from "../../shared/db/value-text.ts";
import { APPLY_SETTINGS_SQL } from "../../shared/londiste/apply.ts";
import { recordTick } from "../../shared/londiste/position.ts";
import { writeTransition, type TableSync } from "../../shared/londiste/sync-store.ts";
import { readTableShape, type TableShape } from "../../shared/londiste/table-shape.ts";
import { forceNewTick } from "../../shared/pgq/index.ts";
import type { CopyContext } from "./context.ts";
import { consumerPosition, copyConsumerName, registerFresh } from "./copy-consumer.ts";
import { recreateDestObjects, setAsideDestObjects } from "./dest-objects.ts";
import { StepAbandoned, TableFailure } from "./errors.ts";
import { requireLeaseIn } from "./lease.ts";
import { withTransaction } from "../../shared/db/transaction.ts";
import { clientNaming, databaseRole } from "../../shared/db/where.ts";
import { CopyProgress } from "./progress.ts";
import { streamRows } from "./row-stream.ts";

/** Output settings of the provider session: values leave as the text the subscriber reads back exactly. */
const PROVIDER_SESSION_SQL = `${setStatements(VALUE_TEXT_SETTINGS)}; set statement_timeout = 0; set idle_in_transaction_session_timeout = 0`;

/** The columns to copy, in the provider's order; a provider column missing on the subscriber fails the table. */
export function copyColumns(provider: TableShape, dest: TableShape): string[] {
  const columns: string[] = [];
  for (const [name, column] of provider.columns) {
    const theirs = dest.columns.get(name);
    if (!theirs) {
      if (column.generated) continue;
      throw new TableFailure(`Column ${name} does not exist on dest side`);
    }
    // A generated subscriber column computes its own value.
    if (!theirs.generated) columns.push(name);
  }
  return columns;
}

export async function copyTable(ctx: CopyContext, table: TableSync, signal: AbortSignal): Promise<void> {
  const { queue, consumer } = ctx.config;
  const copyConsumer = copyConsumerName(consumer, table.table);
  const log = ctx.log.child({ table: table.table });

  const registeredTick = await withTransaction(ctx.subscriber, async (client) => {
    await requireLeaseIn(client, queue, table.table, ctx.me, "in-copy");
    return registerFresh(ctx.provider, queue, copyConsumer);
  });
  log.info({ consumer: copyConsumer, tick: registeredTick, dest: table.dest, skipTruncate: table.skipTruncate }, "copy starting");

  const providerShape = await readTableShape(ctx.provider, table.table);
  if (!providerShape) throw new TableFailure(`${table.table}: no such table on the provider`);

  const name = `londiste ${ctx.config.jobName} copy`;
  // Named clients: a failed connect says which side, a refused statement which GRANT is missing.
  // TCP keepalive: a peer that vanished without closing (a host cut off) ends the connection in minutes, not never.
  const keepAlive = { keepAlive: true, keepAliveInitialDelayMillis: 10_000 };
  const prov = new (clientNaming("provider", ctx.config.provider))({ ...ctx.config.provider, ...keepAlive, application_name: name });
  const sub = new (clientNaming("subscriber", ctx.config.subscriber))({ ...ctx.config.subscriber, ...keepAlive, application_name: name });
  // A connection of the copy lost (a server restart, a network failure) fails this attempt at once: the
  // rows stream between the two, and a stream whose far side died can wait for ever, while the lease
  // heartbeat, on a pool connection of its own, keeps the table this worker's.
  const lost = new AbortController();
  const onLost = (side: string) => (error?: Error) => {
    if (!lost.signal.aborted) lost.abort(new Error(`the copy's ${side} connection was lost${error ? `: ${error.message}` : ""}`));
  };
  prov.on("error", onLost("provider"));
  sub.on("error", onLost("subscriber"));
  prov.on("end", onLost("provider"));
  sub.on("end", onLost("subscriber"));
  const attempt = AbortSignal.any([signal, lost.signal]);
  // Aborting (stop, lost lease) closes both connections: the server rolls both transactions back.
  const close = () => Promise.all([prov.end().catch(() => {}), sub.end().catch(() => {})]);
  const onAbort = () => void close();
  signal.addEventListener("abort", onAbort, { once: true });
  let progress: CopyProgress | undefined;
  /** After the commit the connections are left to the background ANALYZE, which closes them. */
  let handedOff = false;
  try {
    await Promise.all([prov.connect(), sub.connect()]);
    if (signal.aborted) throw new StepAbandoned("stopping");
    await sub.query("begin");
    await sub.query(`${APPLY_SETTINGS_SQL}; set local statement_timeout = 0`);
    const dest = await readTableShape(sub, table.dest);
    if (!dest) throw new TableFailure(`${table.dest}: no such table on the subscriber`);
    const columns = copyColumns(providerShape, dest);
    if (columns.length === 0) throw new TableFailure(`${table.table}: no columns to copy`);

    const saved = await setAsideDestObjects(sub, dest);
    log.info(
      { constraints: saved.constraints.length, indexes: saved.indexes.length, foreignKeysParked: saved.foreignKeys.length },
      "indexes and constraints set aside",
    );
    const truncated = !table.skipTruncate;
    if (truncated) await sub.query(`truncate ${ownRows(dest.name, dest.relkind)}`);

    await prov.query(PROVIDER_SESSION_SQL);
    await prov.query("begin isolation level repeatable read read only");
    const { rows } = await prov.query<{ snapshot: string; isolation: string }>(
      "select pg_current_snapshot()::text as snapshot, current_setting('transaction_isolation') as isolation",
    );
    const snapshot = rows[0]!.snapshot;
    if (rows[0]!.isolation !== "repeatable read") {
      throw new Error(`the provider transaction runs in ${rows[0]!.isolation}, not repeatable read: refusing to copy, as rows could be lost (the Skytools copy lost rows in READ COMMITTED)`);
    }
    const { rows: est } = await prov.query<{ n: number }>("select reltuples::float8 as n from pg_class where oid = $1", [providerShape.oid]);
    const estimated = est[0] && est[0].n >= 0 ? Math.round(est[0].n) : null;

    const list = columns.map(quoteIdent).join(", ");
    progress = new CopyProgress(ctx, table.table, estimated);
    progress.start();
    log.info({ snapshot, columns: columns.length, estimatedRows: estimated }, "copying rows");
    const sql = {
      copyOut: `copy (select ${list} from ${ownRows(providerShape.name, providerShape.relkind)}) to stdout`,
      copyIn: `copy ${dest.name} (${list}) from stdin${truncated && dest.relkind === "r" ? " with (freeze)" : ""}`,
    };
    const counted = await streamRows(prov, sub, sql, (bytes, n) => progress!.add(bytes, n), attempt, (error, side) =>
      // A refused COPY names the GRANT to add, as every other statement of the copy does.
      withPrivilegeHint(error, databaseRole(ctx.config[side]), side === "provider" ? sql.copyOut : sql.copyIn),
    );
    progress.stop();
    await prov.query("commit");
    // The fence tick only has to be newer than the snapshot: ask for it now, while the indexes are rebuilt.
    const fence = forceNewTick(ctx.provider, queue, { notOlderThan: snapshot, signal });
    fence.catch(() => {});

    await recreateDestObjects(sub, dest.name, saved);
    const fenceTick = await fence;
    await recordTick(sub, copyConsumer, null);

    const current = await requireLeaseIn(sub, queue, table.table, ctx.me, "in-copy");
    const position = await consumerPosition(ctx.provider, queue, copyConsumer);
    if (position?.lastTick !== registeredTick || position.currentBatch !== null) {
      throw new Error(`copy consumer ${copyConsumer} moved during the copy (registered at tick ${registeredTick}, now ${JSON.stringify(position)})`);
    }
    const result = await writeTransition(sub, current, { type: "COPY.DONE", snapshot, fenceTick }, "copy");
    if (!result.accepted) throw new StepAbandoned(result.reason);
    await sub.query("commit");
    const report = progress.report("done");
    log.info({ rows: counted.rows, bytes: counted.bytes, mbPerS: report.mb_per_s, snapshot, fenceTick }, "copied: catching-up");
    // Statistics for the new rows, after the commit: the catch-up need not wait for them.
    void analyzeThenClose(sub, dest.name, log).finally(() => {
      signal.removeEventListener("abort", onAbort);
      void close();
    });
    handedOff = true;
  } catch (error) {
    progress?.stop();
    // No rollback statements: closing both connections (below) rolls both transactions back, whereas a
    // rollback sent behind a COPY whose stream was torn down waits for that COPY, for ever.
    throw lost.signal.aborted && !signal.aborted ? lostError(lost.signal, error) : error;
  } finally {
    if (!handedOff) {
      signal.removeEventListener("abort", onAbort);
      await close();
    }
  }
}

/** The lost connection as the attempt's failure (a connection error: retried), with what the streams said. */
function lostError(lost: AbortSignal, error: unknown): Error {
  const reason = lost.reason as Error;
  const said = error instanceof Error ? error.message : String(error);
  return new ConnectionLost(said === reason.message ? said : `${reason.message} (${said})`);
}

/** ANALYZE of the copied table on the copy's own connection (closed afterwards by the caller); a failure is only logged. */
async function analyzeThenClose(sub: pg.Client, destName: string, log: CopyContext["log"]): Promise<void> {
  const started = Date.now();
  try {
    await sub.query(`analyze ${destName}`);
    log.debug({ ms: Date.now() - started }, "analyzed the copied table");
  } catch (error) {
    log.warn({ err: error }, "could not analyze the copied table");
  }
}
