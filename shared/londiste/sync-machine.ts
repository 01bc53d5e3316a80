/**
 * The life of one subscriber table, as an XState machine: the Skytools 2
 * states and owners (docs/protocols.md, "Initial copy and the handover to
 * replay"; none → in-copy → catching-up → wanna-sync:<tick> →
 * do-sync:<tick> → ok), plus error and removed. Pure: no I/O, no actions
 * with effects; services read the decision (`decide`) and do the work,
 * and sync-store.ts persists the result in the same transaction.
 *
 * The handover (why each change is applied exactly once). The copy
 * worker and replay are two PgQ consumers walking the same tick sequence.
 *  - in-copy (copy): COPY under snapshot S, then a fence tick taken after
 *    S; → catching-up with S and the fence.
 *  - catching-up (copy): applies the table's events of its own batches,
 *    skipping those visible in S. When it has no next batch (caught up at
 *    copyTick ≥ fence) it checks, under replay's position lock, where
 *    replay is: replayTick ≤ copyTick → wanna-sync:copyTick and it stops
 *    moving; replayTick > copyTick → it catches up further (rejected).
 *  - wanna-sync:T (replay): replay ignores the table in batches ending at
 *    or before T (the copy applied them); at the batch that starts at T
 *    (or, idle, when its position is T) it takes over: do-sync:T, and it
 *    applies the table's events of that batch in the same transaction.
 *  - do-sync:T (copy): replay applies the table already; the copy, still
 *    at T, finishes: ok, and drops its consumer.
 *  - ok (replay): applied by replay.
 * Replay never waits for the copy; the fence makes sure no event visible
 * in S reaches replay after the handover.
 *
 * Out of error without a copy (repair --apply): with replay held at a
 * tick T and its position lock taken in the subscriber transaction, the
 * table is made equal to the provider's rows at T, and REPAIRED puts it
 * back to ok in that transaction: replay applies it again from the batch
 * that starts at T, which holds exactly the changes after T.
 */
import { assign, type SnapshotFrom, setup, transition } from "xstate";

export type SyncStateName = "none" | "in-copy" | "catching-up" | "wanna-sync" | "do-sync" | "ok" | "error" | "removed";
export type SyncActor = "replay" | "copy" | "admin" | "repair";

export interface SyncContext {
  /** wanna-sync / do-sync: the handover tick. */
  tick: number | null;
  /** The copy's snapshot (txid_snapshot text): events visible in it are in the copied rows. */
  snapshot: string | null;
  /** A tick taken after the copy's snapshot; the copy hands over only at or after it. */
  fenceTick: number | null;
  /** error: why. */
  error: string | null;
  /** The state the error came from. */
  errorIn: SyncStateName | null;
}

export type SyncEvent =
  | { type: "COPY.REQUESTED" }
  | { type: "EXPECT_SYNC" }
  | { type: "COPY.DONE"; snapshot: string; fenceTick: number }
  | { type: "COPY.CAUGHT_UP"; copyTick: number; replayTick: number | null }
  | { type: "REPLAY.REACHED"; replayTick: number }
  | { type: "COPY.FINISHED"; copyTick: number }
  | { type: "FAIL"; message: string }
  | { type: "RESYNC" }
  | { type: "REPAIRED"; tick: number }
  | { type: "REMOVE" };

export const EMPTY_CONTEXT: SyncContext = { tick: null, snapshot: null, fenceTick: null, error: null, errorIn: null };

/** What the rest of the system needs to know about a state. */
export interface StateFacts {
  /** Who acts in the state (the "who acts" column of docs/protocols.md, "Initial copy and the handover to replay"). */
  owner: SyncActor | null;
  /** A copy worker holds the table: it works in the state, or waits in it for replay. */
  copyServes: boolean;
  /** Replay applies the table's row changes (in do-sync because replay took the table over at its tick). */
  replayApplies: boolean;
  /** compare/repair can read the table at a consistent point: no copy is rewriting its rows. */
  comparable: boolean;
  /** How merge_state holds the state: NULL, the state's name, or the name and the handover tick (`wanna-sync:12`). */
  mergeState: "null" | "name" | "name:tick";
  /** The owner's work, for the generated doc. */
  work: string;
}

/** The one table of state facts: the machine's meta, the predicates below and the doc are read from it. */
const STATE_FACTS: Record<SyncStateName, StateFacts> = {
  none: { owner: "replay", copyServes: false, replayApplies: false, comparable: false, mergeState: "null", work: "request a copy" },
  "in-copy": {
    owner: "copy",
    copyServes: true,
    replayApplies: false,
    comparable: false,
    mergeState: "name",
    work: "copy the rows under a snapshot, take a fence tick",
  },
  "catching-up": {
    owner: "copy",
    copyServes: true,
    replayApplies: false,
    comparable: false,
    mergeState: "name",
    work: "apply the table's events past the snapshot until caught up",
  },
  "wanna-sync": {
    owner: "replay",
    copyServes: true,
    replayApplies: false,
    comparable: false,
    mergeState: "name:tick",
    work: "reach the tick, take the table over",
  },
  "do-sync": { owner: "copy", copyServes: true, replayApplies: true, comparable: false, mergeState: "name:tick", work: "finish: drop the copy consumer" },
  ok: { owner: "replay", copyServes: false, replayApplies: true, comparable: true, mergeState: "name", work: "apply the table's events" },
  error: {
    owner: "admin",
    copyServes: false,
    replayApplies: false,
    comparable: true,
    mergeState: "name",
    work: "wait for a repair --apply (fixed at a consistent point, no copy) or a resync (copied again)",
  },
  removed: { owner: null, copyServes: false, replayApplies: false, comparable: false, mergeState: "null", work: "none: no longer replicated" },
};

/** Every state, in the protocol's order. */
export const SYNC_STATES = Object.keys(STATE_FACTS) as SyncStateName[];

export function stateFacts(state: SyncStateName): StateFacts {
  return STATE_FACTS[state];
}

/** The states a copy worker serves, in the protocol's order. */
export const COPY_STATES: readonly SyncStateName[] = SYNC_STATES.filter((s) => STATE_FACTS[s].copyServes);

/** A copy worker holds the table in this state (claims it, keeps its copy consumer). */
export function isCopyState(state: SyncStateName): boolean {
  return STATE_FACTS[state].copyServes;
}

/** compare/repair can read the table at a consistent point in this state. */
export function isComparable(state: SyncStateName): boolean {
  return STATE_FACTS[state].comparable;
}

/** Replay applies the table's row changes in this state. */
export function replayApplies(state: SyncStateName): boolean {
  return STATE_FACTS[state].replayApplies;
}

/** How a state is written in merge_state: its text, followed by `:<tick>` when withTick; null when the column is NULL. */
export function stateTextForm(state: SyncStateName): { text: string; withTick: boolean } | null {
  const form = STATE_FACTS[state].mergeState;
  return form === "null" ? null : { text: state, withTick: form === "name:tick" };
}

const cleared = { tick: null, snapshot: null, fenceTick: null, error: null, errorIn: null };

export const syncMachine = setup({
  types: {
    context: {} as SyncContext,
    events: {} as SyncEvent,
    input: {} as Partial<SyncContext> | undefined,
  },
  guards: {
    caughtUpPastFence: ({ context, event }) =>
      event.type === "COPY.CAUGHT_UP" &&
      context.fenceTick !== null &&
      event.copyTick >= context.fenceTick &&
      (event.replayTick === null || event.replayTick <= event.copyTick),
    replayAtTick: ({ context, event }) => event.type === "REPLAY.REACHED" && event.replayTick === context.tick,
    copyAtTick: ({ context, event }) => event.type === "COPY.FINISHED" && event.copyTick === context.tick,
  },
}).createMachine({
  id: "tableSync",
  initial: "none",
  context: ({ input }) => ({ ...EMPTY_CONTEXT, ...input }),
  on: {
    RESYNC: { target: ".none", actions: assign(cleared) },
    REMOVE: { target: ".removed" },
  },
  states: {
    none: {
      meta: STATE_FACTS.none,
      on: {
        "COPY.REQUESTED": { target: "in-copy" },
        EXPECT_SYNC: { target: "ok" },
      },
    },
    "in-copy": {
      meta: STATE_FACTS["in-copy"],
      on: {
        "COPY.DONE": {
          target: "catching-up",
          actions: assign(({ event }) => ({ snapshot: event.snapshot, fenceTick: event.fenceTick })),
        },
        FAIL: { target: "error", actions: assign(({ event }) => ({ error: event.message, errorIn: "in-copy" as const })) },
      },
    },
    "catching-up": {
      meta: STATE_FACTS["catching-up"],
      on: {
        "COPY.CAUGHT_UP": {
          guard: "caughtUpPastFence",
          target: "wanna-sync",
          actions: assign(({ event }) => ({ tick: event.copyTick })),
        },
        FAIL: { target: "error", actions: assign(({ event }) => ({ error: event.message, errorIn: "catching-up" as const })) },
      },
    },
    "wanna-sync": {
      meta: STATE_FACTS["wanna-sync"],
      on: {
        "REPLAY.REACHED": { guard: "replayAtTick", target: "do-sync" },
        FAIL: { target: "error", actions: assign(({ event }) => ({ error: event.message, errorIn: "wanna-sync" as const })) },
      },
    },
    "do-sync": {
      meta: STATE_FACTS["do-sync"],
      on: {
        "COPY.FINISHED": {
          guard: "copyAtTick",
          target: "ok",
          actions: assign({ tick: null, snapshot: null, fenceTick: null }),
        },
        FAIL: { target: "error", actions: assign(({ event }) => ({ error: event.message, errorIn: "do-sync" as const })) },
      },
    },
    ok: {
      meta: STATE_FACTS.ok,
      on: {
        FAIL: { target: "error", actions: assign(({ event }) => ({ error: event.message, errorIn: "ok" as const })) },
      },
    },
    error: {
      meta: STATE_FACTS.error,
      on: {
        REPAIRED: { target: "ok", actions: assign(cleared) },
      },
    },
    removed: { type: "final", meta: STATE_FACTS.removed },
  },
});

export type SyncSnapshot = SnapshotFrom<typeof syncMachine>;

/** What is stored in the table row. */
export interface PersistedSync {
  state: SyncStateName;
  context: SyncContext;
}

export function toSnapshot(p: PersistedSync): SyncSnapshot {
  return syncMachine.resolveState({ value: p.state, context: { ...EMPTY_CONTEXT, ...p.context } });
}

export type Decision = { accepted: true; next: PersistedSync } | { accepted: false; state: SyncStateName; reason: string };

/** The machine's answer to an event in a state: the next state, or a rejection (state unchanged). */
export function decide(current: PersistedSync, event: SyncEvent): Decision {
  const snapshot = toSnapshot(current);
  if (current.state === "removed" || !snapshot.can(event)) {
    return { accepted: false, state: current.state, reason: `${event.type} is not allowed in state ${stateLabel(current)}` };
  }
  const [next] = transition(syncMachine, snapshot, event);
  return { accepted: true, next: { state: next.value as SyncStateName, context: { ...next.context } } };
}

/** The Skytools 2 text form (londiste.subscriber_table.merge_state; docs/table-sync-machine.md): NULL for none. */
export function stateText(p: PersistedSync): string | null {
  const form = stateTextForm(p.state);
  if (!form) return null;
  return form.withTick ? `${form.text}:${p.context.tick}` : form.text;
}

/** Reads the text form back (for rows written through the SQL functions); `?` is the legacy ok. */
export function fromStateText(text: string | null, snapshot: string | null = null, error: string | null = null): PersistedSync {
  const context: SyncContext = { ...EMPTY_CONTEXT, snapshot };
  if (text === null) return { state: "none", context };
  if (text === "?") return { state: "ok", context };
  const m = /^([a-z-]+)(?::(\d+))?$/.exec(text);
  const state = SYNC_STATES.find((name) => stateTextForm(name)?.text === m?.[1]);
  const form = state && stateTextForm(state);
  if (!m || !state || !form || form.withTick !== (m[2] !== undefined)) throw new Error(`Bad table state: ${text}`);
  if (state === "error") return { state, context: { ...context, error } };
  return { state, context: form.withTick ? { ...context, tick: Number(m[2]) } : context };
}

/** The state for people: the text form, "(none)" or "removed". */
export function stateLabel(p: PersistedSync): string {
  return p.state === "removed" ? "removed" : (stateText(p) ?? "(none)");
}
