/**
 * The table-sync machine without a database: every event in every state,
 * the legal ones lead where the Skytools 2 state table says
 * (docs/protocols.md, "Initial copy and the handover to replay"), every
 * other one is rejected and leaves the state as it was; the guards at
 * their edges; the text form of the state column; the facts each state
 * carries; the generated doc is current.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  COPY_STATES,
  decide,
  EMPTY_CONTEXT,
  fromStateText,
  isComparable,
  isCopyState,
  type PersistedSync,
  replayApplies,
  stateFacts,
  stateText,
  SYNC_STATES,
  type SyncEvent,
  type SyncStateName,
  syncMachine,
} from "../../shared/londiste/sync-machine.ts";
import { machineMarkdown } from "../../shared/londiste/sync-machine-doc.ts";
import { machineSql, sqlWrites } from "../../shared/londiste/sync-machine-sql.ts";

const at = (state: SyncStateName, context: Partial<PersistedSync["context"]> = {}): PersistedSync => ({
  state,
  context: { ...EMPTY_CONTEXT, ...context },
});

/** A state as the protocol reaches it, with its context. */
const STATES: Record<SyncStateName, PersistedSync> = {
  none: at("none"),
  "in-copy": at("in-copy"),
  "catching-up": at("catching-up", { snapshot: "100:105:101", fenceTick: 10 }),
  "wanna-sync": at("wanna-sync", { snapshot: "100:105:101", fenceTick: 10, tick: 12 }),
  "do-sync": at("do-sync", { snapshot: "100:105:101", fenceTick: 10, tick: 12 }),
  ok: at("ok"),
  error: at("error", { error: "boom", errorIn: "ok" }),
  removed: at("removed"),
};

/** Events that satisfy their guards for STATES above. */
const EVENTS: SyncEvent[] = [
  { type: "COPY.REQUESTED" },
  { type: "EXPECT_SYNC" },
  { type: "COPY.DONE", snapshot: "100:105:101", fenceTick: 10 },
  { type: "COPY.CAUGHT_UP", copyTick: 12, replayTick: 11 },
  { type: "REPLAY.REACHED", replayTick: 12 },
  { type: "COPY.FINISHED", copyTick: 12 },
  { type: "FAIL", message: "bad data" },
  { type: "RESYNC" },
  { type: "REMOVE" },
  { type: "REPAIRED", tick: 12 },
];

/** The legal moves: state → event type → next state. */
const LEGAL: Partial<Record<SyncStateName, Record<string, SyncStateName>>> = {
  none: { "COPY.REQUESTED": "in-copy", EXPECT_SYNC: "ok", RESYNC: "none", REMOVE: "removed" },
  "in-copy": { "COPY.DONE": "catching-up", FAIL: "error", RESYNC: "none", REMOVE: "removed" },
  "catching-up": { "COPY.CAUGHT_UP": "wanna-sync", FAIL: "error", RESYNC: "none", REMOVE: "removed" },
  "wanna-sync": { "REPLAY.REACHED": "do-sync", FAIL: "error", RESYNC: "none", REMOVE: "removed" },
  "do-sync": { "COPY.FINISHED": "ok", FAIL: "error", RESYNC: "none", REMOVE: "removed" },
  ok: { FAIL: "error", RESYNC: "none", REMOVE: "removed" },
  error: { RESYNC: "none", REMOVE: "removed", REPAIRED: "ok" },
  removed: {},
};

describe("table-sync machine", () => {
  it("the tables below name every state and every event the machine knows", () => {
    expect(new Set(Object.keys(STATES))).toEqual(new Set(SYNC_STATES));
    expect(new Set(Object.keys(syncMachine.root.states))).toEqual(new Set(SYNC_STATES));
    expect(new Set(EVENTS.map((e) => e.type))).toEqual(new Set(syncMachine.root.events));
  });

  for (const [name, state] of Object.entries(STATES) as Array<[SyncStateName, PersistedSync]>) {
    for (const event of EVENTS) {
      const expected = LEGAL[name]?.[event.type];
      it(`${name} + ${event.type} → ${expected ?? "rejected"}`, () => {
        const before = structuredClone(state);
        const d = decide(state, event);
        if (expected) {
          expect(d.accepted).toBe(true);
          if (d.accepted) expect(d.next.state).toBe(expected);
        } else {
          expect(d).toMatchObject({ accepted: false, state: name });
          if (!d.accepted) expect(d.reason).toContain(event.type);
        }
        expect(state).toEqual(before);
      });
    }
  }

  it("walks the Skytools 2 state table, carrying the snapshot, fence and tick in the context", () => {
    let s = STATES.none;
    const go = (e: SyncEvent) => {
      const d = decide(s, e);
      if (!d.accepted) throw new Error(d.reason);
      s = d.next;
      return stateText(s);
    };
    expect(go({ type: "COPY.REQUESTED" })).toBe("in-copy");
    expect(go({ type: "COPY.DONE", snapshot: "7:9:8", fenceTick: 4 })).toBe("catching-up");
    expect(s.context).toMatchObject({ snapshot: "7:9:8", fenceTick: 4 });
    expect(go({ type: "COPY.CAUGHT_UP", copyTick: 6, replayTick: null })).toBe("wanna-sync:6");
    expect(go({ type: "REPLAY.REACHED", replayTick: 6 })).toBe("do-sync:6");
    expect(go({ type: "COPY.FINISHED", copyTick: 6 })).toBe("ok");
    expect(s.context).toEqual(EMPTY_CONTEXT);
    expect(go({ type: "FAIL", message: "duplicate key" })).toBe("error");
    expect(s.context).toMatchObject({ error: "duplicate key", errorIn: "ok" });
    expect(go({ type: "RESYNC" })).toBe(null);
    expect(s.context).toEqual(EMPTY_CONTEXT);
  });

  it("guards: the copy hands over only past its fence and never behind replay; replay and copy only at the tick", () => {
    const catching = STATES["catching-up"];
    expect(decide(catching, { type: "COPY.CAUGHT_UP", copyTick: 9, replayTick: 9 }).accepted).toBe(false); // before the fence
    expect(decide(catching, { type: "COPY.CAUGHT_UP", copyTick: 10, replayTick: 11 }).accepted).toBe(false); // replay ahead
    expect(decide(catching, { type: "COPY.CAUGHT_UP", copyTick: 10, replayTick: 10 }).accepted).toBe(true);
    expect(decide(at("catching-up"), { type: "COPY.CAUGHT_UP", copyTick: 10, replayTick: 1 }).accepted).toBe(false); // no fence yet
    const wanna = STATES["wanna-sync"];
    expect(decide(wanna, { type: "REPLAY.REACHED", replayTick: 11 }).accepted).toBe(false);
    expect(decide(wanna, { type: "REPLAY.REACHED", replayTick: 13 }).accepted).toBe(false);
    const doSync = STATES["do-sync"];
    expect(decide(doSync, { type: "COPY.FINISHED", copyTick: 13 }).accepted).toBe(false);
  });

  it("reads and writes the Skytools 2 text form of the state column", () => {
    for (const text of [null, "in-copy", "catching-up", "wanna-sync:12", "do-sync:12", "ok", "error"]) {
      expect(stateText(fromStateText(text))).toBe(text);
    }
    expect(fromStateText("?").state).toBe("ok");
    expect(() => fromStateText("copying")).toThrow("Bad table state: copying");
    expect(() => fromStateText("wanna-sync:x")).toThrow("Bad table state");
    expect(() => fromStateText("wanna-sync")).toThrow("Bad table state");
    expect(() => fromStateText("ok:12")).toThrow("Bad table state");
    expect(() => fromStateText("none")).toThrow("Bad table state");
    expect(fromStateText("error", null, "boom").context.error).toBe("boom");
  });

  it("knows which states the copy worker holds and in which replay applies the table's changes", () => {
    expect(COPY_STATES).toEqual(["in-copy", "catching-up", "wanna-sync", "do-sync"]);
    expect(SYNC_STATES.filter(isCopyState)).toEqual(COPY_STATES);
    expect(SYNC_STATES.filter(replayApplies)).toEqual(["do-sync", "ok"]);
    // compare/repair read a table only where no copy rewrites its rows; repair --apply brings error back to ok.
    expect(SYNC_STATES.filter(isComparable)).toEqual(["ok", "error"]);
    expect(Object.fromEntries(SYNC_STATES.map((s) => [s, stateFacts(s).owner]))).toEqual({
      none: "replay",
      "in-copy": "copy",
      "catching-up": "copy",
      "wanna-sync": "replay",
      "do-sync": "copy",
      ok: "replay",
      error: "admin",
      removed: null,
    });
  });

  it("REPAIRED takes error back to ok with a clean context", () => {
    const decision = decide(STATES.error, { type: "REPAIRED", tick: 40 });
    expect(decision).toEqual({ accepted: true, next: { state: "ok", context: EMPTY_CONTEXT } });
  });

  it("docs/table-sync-machine.md is generated from the current machine (npm run docs:machine)", () => {
    const doc = readFileSync(new URL("../../docs/table-sync-machine.md", import.meta.url), "utf8");
    expect(doc).toBe(machineMarkdown());
  });

  it("sql/londiste/functions/londiste.sync_machine.sql is generated from the current machine (npm run docs:machine)", () => {
    const sql = readFileSync(new URL("../../sql/londiste/functions/londiste.sync_machine.sql", import.meta.url), "utf8");
    expect(sql).toBe(machineSql());
  });

  it("the merge_state writes SQL honours are the machine's RESYNC from every live state and EXPECT_SYNC from none", () => {
    expect(sqlWrites().map((w) => `${w.from} -> ${w.toText ?? "NULL"} (${w.event.type})`)).toEqual([
      "none -> ok (EXPECT_SYNC)",
      ...["in-copy", "catching-up", "wanna-sync", "do-sync", "ok", "error"].map((s) => `${s} -> NULL (RESYNC)`),
    ]);
  });
});
