/**
 * Every Postgres advisory lock the product takes, in one table: the key,
 * who takes it, at what level, for how long, and what it keeps out. The
 * TypeScript that takes a lock reads its class from here; the SQL files use
 * the same numbers as literals, and test/db/advisory-locks.test.ts checks
 * that every advisory lock in the tree is one of these. docs/advisory-locks.md
 * is generated from this table (`npm run docs:locks`).
 *
 * All keys are the two-int4 form (class, object), so no two of them can
 * collide; the class numbers spell "pq" and count up from 1886482800.
 */

export interface AdvisoryLock {
  /** First int4 key. */
  readonly classId: number;
  /** What the second int4 key is. */
  readonly objectKey: string;
  /** Session locks live as long as the connection; transaction locks until commit or rollback. */
  readonly level: "session" | "transaction";
  readonly database: "provider" | "subscriber" | "any" | "log database";
  readonly takenBy: string;
  readonly heldFor: string;
  readonly excludes: string;
}

export const ADVISORY_LOCKS = {
  schemaInstall: {
    classId: 1886482800,
    objectKey: "0 for pgq, 1 for londiste",
    level: "transaction",
    database: "any",
    takenBy: "sql/pgq/install.sql, sql/londiste/install.sql (structure/schema.sql)",
    heldFor: "the install transaction",
    excludes: "a second install or upgrade of the same schema at the same time",
  },
  queueTick: {
    classId: 1886482801,
    objectKey: "queue_id",
    level: "transaction",
    database: "provider",
    takenBy: "pgq.ticker(queue), pgq.tick_if_due(queue) (transaction); the repair worker's consistent point (session, around londiste.tick_at_snapshot)",
    heldFor: "one tick; the repair point's snapshot and tick insert",
    excludes: "two ticks of one queue at once, so tick snapshots never go back",
  },
  activeTicker: {
    classId: 1886482802,
    objectKey: "0",
    level: "session",
    database: "provider",
    takenBy: "the ticker service",
    heldFor: "as long as the ticker is the active one of its database",
    excludes: "a second active ticker on the database (the others stand by)",
  },
  forceTick: {
    classId: 1886482803,
    objectKey: "queue_id",
    level: "transaction",
    database: "provider",
    takenBy: "pgq.force_tick(queue)",
    heldFor: "the force_tick call",
    excludes: "concurrent force_tick calls moving the event sequence back",
  },
  activeReplay: {
    classId: 1886482804,
    objectKey: "FNV-1a hash of the job name (jobLockKey)",
    level: "session",
    database: "subscriber",
    takenBy: "the replay service",
    heldFor: "as long as the replay is the active one of its job",
    excludes: "a second active replay of the job (the others stand by)",
  },
  replayPosition: {
    classId: 1886482805,
    objectKey: "hashtext(consumer name)",
    level: "transaction",
    database: "subscriber",
    takenBy: "replay, the copy's catch-up and handover, the admin commands that move the position, repair --apply",
    heldFor: "the subscriber transaction that applies a batch and records its tick",
    excludes: "two writers of one consumer's recorded tick (londiste.completed) at once",
  },
  outboxRelay: {
    classId: 1886482806,
    objectKey: "hashtext(queue name)",
    level: "transaction",
    database: "subscriber",
    takenBy: "the state-event outbox relay (pg_try_advisory_xact_lock); `subscriber uninstall` (waits for it)",
    heldFor: "one relay pass; uninstall: while it empties the outbox and deletes the stream",
    excludes: "two relays publishing the same queue's outbox, which would reorder events; a relay publishing while uninstall removes the stream",
  },
  pendingFkeys: {
    classId: 1886482807,
    objectKey: "0",
    level: "transaction",
    database: "subscriber",
    takenBy: "the copy, when it parks or restores foreign keys",
    heldFor: "the transaction that drops or re-creates the keys",
    excludes: "two copies racing to drop or restore the same foreign key",
  },
  logdbLoad: {
    classId: 1886482808,
    objectKey: "0",
    level: "transaction",
    database: "log database",
    takenBy: "logdb.load() (pg_try_advisory_xact_lock; a second caller returns 0 at once)",
    heldFor: "one load: tick, move finished batches into logdb.record, rotate",
    excludes: "two loads moving the same batch or rotating the queue's tables at once",
  },
} as const satisfies Record<string, AdvisoryLock>;

export type AdvisoryLockName = keyof typeof ADVISORY_LOCKS;

/** docs/advisory-locks.md. */
export function renderAdvisoryLockDoc(): string {
  const lines = [
    "# Advisory locks",
    "",
    "Generated from `shared/db/advisory-locks.ts` by `npm run docs:locks`; a test keeps it current.",
    "Every key is the two-int4 form `(class, object)`.",
    "",
    "| name | class | object | level | database | taken by | held for | excludes |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const [name, l] of Object.entries(ADVISORY_LOCKS) as [string, AdvisoryLock][]) {
    lines.push(`| ${name} | ${l.classId} | ${l.objectKey} | ${l.level} | ${l.database} | ${l.takenBy} | ${l.heldFor} | ${l.excludes} |`);
  }
  return lines.join("\n") + "\n";
}
