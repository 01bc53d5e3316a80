/**
 * Plain-SQL writes of londiste.subscriber_table.merge_state (the Skytools
 * habit `update londiste.subscriber_table set merge_state = null where
 * table_name = ...`): in every state, every text a person could write is
 * either the machine's move (written with a version bump and an outbox
 * entry, as sync-store.ts writes) or refused with the londiste command to
 * use; and merge_state never disagrees with the persisted machine state,
 * whatever the writer does. The end-to-end effect (the table is copied
 * again) is in the Skytools set-up order test (cli-skytools-order).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { installLondiste } from "../../shared/londiste/install.ts";
import { decide, type PersistedSync, SYNC_STATES, type SyncEvent, stateText, type SyncStateName } from "../../shared/londiste/sync-machine.ts";
import { loadTableSync, recordTableAdded, writeTransition } from "../../shared/londiste/sync-store.ts";
import { withTransaction } from "../../shared/db/transaction.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

const Q = "skyqueue";
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("lond_merge_state_sql");
  await installLondiste(db.pool); // a subscriber: no PgQ needed
});
afterAll(async () => {
  await db?.drop();
});

/** The events that take a new table to each state (test data: the machine decides whether each is accepted). */
const PATH: Record<Exclude<SyncStateName, "removed">, SyncEvent[]> = {
  none: [],
  "in-copy": [{ type: "COPY.REQUESTED" }],
  "catching-up": [{ type: "COPY.REQUESTED" }, { type: "COPY.DONE", snapshot: "10:20:15", fenceTick: 7 }],
  "wanna-sync": [
    { type: "COPY.REQUESTED" },
    { type: "COPY.DONE", snapshot: "10:20:15", fenceTick: 7 },
    { type: "COPY.CAUGHT_UP", copyTick: 9, replayTick: 8 },
  ],
  "do-sync": [
    { type: "COPY.REQUESTED" },
    { type: "COPY.DONE", snapshot: "10:20:15", fenceTick: 7 },
    { type: "COPY.CAUGHT_UP", copyTick: 9, replayTick: 8 },
    { type: "REPLAY.REACHED", replayTick: 9 },
  ],
  ok: [{ type: "EXPECT_SYNC" }],
  error: [{ type: "COPY.REQUESTED" }, { type: "FAIL", message: "duplicate key" }],
};
const LIVE_STATES = SYNC_STATES.filter((s): s is Exclude<SyncStateName, "removed"> => s !== "removed");

/** Every text a person might write: each state's form, the legacy `?`, and nonsense. */
const WRITES: Array<string | null> = [null, "in-copy", "catching-up", "wanna-sync:9", "do-sync:9", "ok", "error", "?", "copying", "wanna-sync"];

let tableNo = 0;
async function tableIn(state: Exclude<SyncStateName, "removed">): Promise<string> {
  const table = `public.t${++tableNo}`;
  await withTransaction(db.pool, async (client) => {
    await client.query("select londiste.subscriber_add_table($1, $2)", [Q, table]);
    let current = (await loadTableSync(client, Q, table))!;
    await recordTableAdded(client, current, "admin");
    for (const event of PATH[state]) {
      const result = await writeTransition(client, current, event, "copy");
      if (!result.accepted) throw new Error(`${event.type}: ${result.reason}`);
      current = result.table;
    }
  });
  expect((await loadTableSync(db.pool, Q, table))!.sync.state).toBe(state);
  return table;
}

interface RowState {
  merge_state: string | null;
  sync_state: PersistedSync | null;
  sync_version: string;
  snapshot: string | null;
  last_error: string | null;
}
const rowOf = async (table: string) =>
  (
    await db.query<RowState>(
      "select merge_state, sync_state, sync_version, snapshot, last_error from londiste.subscriber_table where queue_name = $1 and table_name = $2",
      [Q, table],
    )
  ).rows[0]!;
const outboxCount = async (table: string) =>
  Number((await db.query("select count(*) as n from londiste.sync_outbox where table_name = $1", [table])).rows[0].n);

/** What the machine says a write of `text` in `state` is: the event it stands for, or null (refused). */
function expected(state: SyncStateName, persisted: PersistedSync, text: string | null): { event: SyncEvent; next: PersistedSync } | null {
  const event: SyncEvent | null = text === null ? { type: "RESYNC" } : text === "ok" ? { type: "EXPECT_SYNC" } : null;
  if (!event) return null;
  const decision = decide(persisted, event);
  if (!decision.accepted || decision.next.state === state) return null;
  return { event, next: decision.next };
}

describe("plain-SQL writes of merge_state", () => {
  for (const state of LIVE_STATES) {
    it(`in state ${state}: legal writes are the machine's move, the others are refused; text and machine agree`, async () => {
      const table = await tableIn(state);
      const before = await rowOf(table);
      // a new table has no machine snapshot yet: its state is read from the text
      const persisted = before.sync_state ?? (await loadTableSync(db.pool, Q, table))!.sync;
      expect(before.merge_state).toBe(stateText(persisted));
      for (const text of WRITES) {
        if (text === before.merge_state) continue; // not a change
        const outboxBefore = await outboxCount(table);
        const move = expected(state, persisted, text);
        const client = await db.pool.connect();
        try {
          await client.query("begin");
          const attempt = client
            .query("update londiste.subscriber_table set merge_state = $3 where queue_name = $1 and table_name = $2", [Q, table, text])
            .then(
              () => null,
              (error: Error & { hint?: string }) => error,
            );
          const error = await attempt;
          if (move) {
            expect(error, `${state} -> ${text}`).toBeNull();
            const after = (await client.query<RowState>("select merge_state, sync_state, sync_version, snapshot, last_error from londiste.subscriber_table where table_name = $1", [table])).rows[0]!;
            expect(after.sync_state).toEqual(move.next);
            expect(after.merge_state).toBe(stateText(move.next));
            expect(Number(after.sync_version)).toBe(Number(before.sync_version) + 1);
            expect(after.snapshot).toBe(move.next.context.snapshot);
            const { rows: outbox } = await client.query(
              "select from_state, to_state, event, version from londiste.sync_outbox where table_name = $1 order by id desc limit 1",
              [table],
            );
            expect(outbox[0]).toMatchObject({
              from_state: before.merge_state,
              to_state: stateText(move.next),
              event: { type: move.event.type, actor: "admin", via: "merge_state" },
              version: after.sync_version,
            });
          } else {
            expect(error, `${state} -> ${text} must be refused`).not.toBeNull();
            if (text === "?" || text === "copying" || text === "wanna-sync") {
              expect(error!.message).toMatch(text === "?" ? /cannot set merge_state/ : /^Bad table state: /);
            } else {
              expect(error!.message).toContain(`cannot set merge_state of ${table} from ${before.merge_state ?? "NULL"} to ${text}`);
              expect(error!.hint).toContain(`londiste CONF subscriber resync ${table}`);
            }
          }
        } finally {
          await client.query("rollback");
          client.release();
        }
        // rolled back: the row is as it was
        expect(await rowOf(table)).toEqual(before);
        expect(await outboxCount(table)).toBe(outboxBefore);
      }
    });
  }

  it("the Skytools resync (merge_state = NULL) on an ok table commits as RESYNC: state none, ready to be copied", async () => {
    const table = await tableIn("ok");
    await db.query("update londiste.subscriber_table set merge_state = null where table_name = $1", [table]);
    const sync = (await loadTableSync(db.pool, Q, table))!;
    expect(sync.sync.state).toBe("none");
    expect(sync.stateText).toBeNull();
  });

  it("a writer that moves sync_version itself still cannot make the two disagree", async () => {
    const table = await tableIn("ok");
    await expect(
      db.query("update londiste.subscriber_table set merge_state = 'in-copy', sync_version = sync_version + 1 where table_name = $1", [table]),
    ).rejects.toThrow(/subscriber_table_merge_state_matches/);
    await expect(
      db.query(
        `update londiste.subscriber_table set sync_state = '{"state":"none","context":{}}', sync_version = sync_version + 1 where table_name = $1`,
        [table],
      ),
    ).rejects.toThrow(/subscriber_table_merge_state_matches/);
    expect((await rowOf(table)).merge_state).toBe("ok");
    // the compatibility function writes the text alone (no machine state): the text is then the state
    await db.query("select londiste.subscriber_set_table_state($1, $2, null, 'in-copy')", [Q, table]);
    expect((await loadTableSync(db.pool, Q, table))!.sync.state).toBe("in-copy");
  });

  it("every row of every state above has merge_state equal to its machine state's text", async () => {
    const { rows } = await db.query<{ n: string }>(
      "select count(*) as n from londiste.subscriber_table where sync_state is not null and merge_state is distinct from londiste.sync_state_text(sync_state)",
    );
    expect(Number(rows[0]!.n)).toBe(0);
    const { rows: all } = await db.query<{ table_name: string }>("select table_name from londiste.subscriber_table");
    for (const { table_name } of all) {
      const t = (await loadTableSync(db.pool, Q, table_name))!;
      expect(t.stateText).toBe(stateText(t.sync));
    }
  });
});
