/**
 * What the replay service's admin commands work with, and the helpers
 * they share: per-name outcomes, install checks, error wording.
 */
import type pg from "pg";
import { CommandError } from "../../../shared/bus/replies.ts";
import { requireLondisteOn, requireQueueOn } from "../../../shared/londiste/setup.ts";

export interface ReplayLiveState {
  /** starting, standby (another instance replays), active. */
  role: string;
  batches: number;
  changes: number;
  lastBatchAt: string | null;
  lastError: string | null;
  /** Idle because the operator unregistered the consumer (subscriber unregister). */
  unregistered: boolean;
}

export interface AdminContext {
  provider: pg.Pool;
  subscriber: pg.Pool;
  queue: string;
  consumer: string;
  jobName: string;
  /** Makes replay look at the table set again now instead of at its next poll. */
  wake: () => void;
  live: () => ReplayLiveState;
  /** Deletes the job's JetStream stream of state changes (state-events.ts): its name, and whether it existed. */
  deleteStateStream: () => Promise<{ stream: string; deleted: boolean }>;
}

/** The result for one table or sequence named in a command. */
export interface NameOutcome {
  name: string;
  ok: boolean;
  /** What was done, or why not. */
  message: string;
  warnings?: string[];
}

export const names = { type: "string[]", required: true, maxItems: 500, maxLength: 300 } as const;

export async function requireLondiste(db: pg.Pool, side: "provider" | "subscriber"): Promise<void> {
  await requireLondisteOn(db, side);
}

export async function requireQueue(ctx: AdminContext): Promise<void> {
  await requireQueueOn(ctx.provider, ctx.queue);
}

export function requireNames(list: unknown): string[] {
  const result = list as string[];
  if (result.length === 0) throw new CommandError("bad_request", "name at least one table or sequence");
  return result;
}

/** Runs one step per name; a failing name does not stop the others. */
export async function perName(list: string[], step: (name: string) => Promise<Omit<NameOutcome, "name">>): Promise<NameOutcome[]> {
  const out: NameOutcome[] = [];
  for (const name of list) {
    try {
      out.push({ name, ...(await step(name)) });
    } catch (error) {
      const message = describeDbError(error);
      out.push({ name, ok: false, message: message.startsWith("bad name") ? `${message}${quotingHint(name)}` : message });
    }
  }
  return out;
}

/**
 * For a name refused as bad: how to write it when it holds a space that
 * SQL needs quoted (`my table` is `"my table"`, `s.my table` is
 * `s."my table"`), as the user types it in a shell. Empty when that is
 * not the trouble.
 */
export function quotingHint(name: string): string {
  if (!/\s/.test(name) || name.includes('"')) return "";
  const dot = name.indexOf(".");
  const quoted = dot > 0 && !/\s/.test(name.slice(0, dot)) ? `${name.slice(0, dot)}."${name.slice(dot + 1)}"` : `"${name}"`;
  return ` (a name with a space needs SQL double quotes, inside shell quotes: '${quoted}')`;
}

/** A database error as a sentence for a person. */
export function describeDbError(error: unknown): string {
  const e = error as { code?: string; message?: string };
  if (e.code === "23505") return "already registered";
  return e.message ?? String(error);
}
