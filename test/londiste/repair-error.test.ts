/**
 * A table in state `error` brought back by `repair --apply` without a
 * copy, end to end (ticker, replay and a repair worker as OS processes,
 * every step a `londiste CONF ...` call): replay stops the table on a
 * duplicate key and skips its changes from then on; `compare` compares
 * it and fails, reports the tables it skipped and fails for a named table
 * it did not compare; `repair --apply` fixes the table at a consistent
 * point while the provider keeps writing, the machine takes it from
 * error to ok with REPAIRED, and replay applies its changes from there.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectOk, show } from "../support/pgqadm.ts";
import { ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { waitFor } from "../support/wait.ts";
import { createLondisteJob, installJob, LONDISTE_LAUNCHER, type LondisteJob } from "./job.ts";

useProcessCleanup();

let job: LondisteJob;

beforeAll(async () => {
  job = await createLondisteJob({ label: "lond_reperr" });
  await job.startReplay().waitForLog("serving admin commands on NATS");
  await installJob(job);
  for (const db of [job.provider, job.subscriber]) {
    await db.query("create table t (id int primary key, v text); create table waiting (id int primary key)");
    await db.query("insert into t select g, 'v' || g from generate_series(1, 300) g");
  }
  expectOk(await job.londiste("provider", "add", "t", "waiting"));
  expectOk(await job.londiste("subscriber", "add", "--expect-sync", "t"));
  // No copy worker runs: this one stays waiting for its copy.
  expectOk(await job.londiste("subscriber", "add", "waiting"));
  const worker = new ServiceProcess("lond_reperr-repair", process.execPath, [LONDISTE_LAUNCHER, job.conf, "repair-worker"]);
  await worker.waitForLog("serving compare and repair on NATS", { timeoutMs: 30_000 });
}, 90_000);

afterAll(async () => {
  await job?.drop();
});

const stateOf = async (table: string) =>
  (await job.subscriber.query<{ merge_state: string | null }>("select merge_state from londiste.subscriber_table where table_name = $1", [table]))
    .rows[0]?.merge_state;

const contents = async (db: LondisteJob["provider"]) => JSON.stringify((await db.query("select id, v from t order by id")).rows);

describe("a table in state error", () => {
  it("compare fails for it and reports what it skipped; repair --apply brings it back to ok without a copy", async () => {
    await waitFor(async () => (await stateOf("public.waiting")) === "in-copy", { what: "waiting handed to a copy" });
    // A local row on the subscriber makes the provider's insert of the same key fail: t stops.
    await job.subscriber.query("insert into t values (301, 'local')");
    await job.provider.query("insert into t values (301, 'provider')");
    await waitFor(async () => (await stateOf("public.t")) === "error", { what: "t in state error" });
    // Changes replay now skips.
    await job.provider.query("insert into t select g, 'late' || g from generate_series(302, 320) g");
    await job.provider.query("update t set v = 'changed' where id between 10 and 19");
    await job.provider.query("delete from t where id between 100 and 104");

    const compared = await job.londiste("compare");
    expect(compared.code, show(compared)).toBe(1);
    expect(compared.stdout).toMatch(/^public\.t: FAILED: Results do not match! .*replay stopped applying it \(state error\): repair --apply fixes it/m);
    expect(compared.stdout).toMatch(/^public\.waiting: skipped: public\.waiting: state in-copy: not in sync yet/m);
    expect(compared.stdout).toContain("1 of 2 tables compared; skipped (not named, not in sync yet): public.waiting");
    // Named, it was not compared: a failure.
    const named = await job.londiste("compare", "waiting");
    expect(named.code, show(named)).toBe(1);
    expect(named.stdout).toContain("public.waiting: FAILED: public.waiting: state in-copy: not in sync yet");
    expect(named.stdout).toContain("0 of 1 tables compared; refused: public.waiting");

    // The provider keeps writing to t while it is repaired.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await job.provider.query("insert into t values ($1, 'during') on conflict (id) do update set v = excluded.v", [1000 + (i % 50)]);
        await job.provider.query("update t set v = $1 where id = $2", [`w${i}`, 1 + (i % 300)]);
        written++;
      }
    })();
    let repaired;
    try {
      await waitFor(() => written > 5, { what: "the writer under way" });
      repaired = await job.londiste("repair", "--apply", "--dir", job.dir, "t");
      await waitFor(() => written > 10, { what: "the writer going on after the repair" });
    } finally {
      writing = false;
      await writer;
    }
    expect(repaired.code, show(repaired)).toBe(0);
    expect(repaired.stdout).toMatch(/^public\.t: finished public\.t: .*applied at tick (\d+): \d+ inserts, \d+ updates, \d+ deletes.*; state error -> ok: replay applies it from tick \1 \(no copy\)$/m);
    expect(await stateOf("public.t")).toBe("ok");

    // Replay applies t again: everything written during and after the repair arrives.
    await job.provider.query("insert into t values (5000, 'after')");
    await waitFor(async () => (await contents(job.subscriber)) === (await contents(job.provider)), {
      what: "t equal on both sides",
      timeoutMs: 30_000,
    });
    const again = await job.londiste("compare", "t");
    expect(again.code, show(again)).toBe(0);
    expect(again.stdout).toMatch(/^public\.t: equal: \d+ rows\n$/);

    // Its history: error → ok by the repair, never through a copy.
    const { rows: history } = await job.subscriber.query<{ from_state: string | null; to_state: string | null; type: string; actor: string }>(
      `select from_state, to_state, event->>'type' as type, event->>'actor' as actor
         from londiste.sync_outbox where table_name = 'public.t' order by id`,
    );
    expect(history.map((h) => [h.from_state, h.to_state, h.type, h.actor])).toEqual([
      [null, null, "ADDED", "admin"],
      [null, "ok", "EXPECT_SYNC", "admin"],
      ["ok", "error", "FAIL", "replay"],
      ["error", "ok", "REPAIRED", "repair"],
    ]);
  });
});
