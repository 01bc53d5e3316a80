/** Producing events: one pgq.insert_event call, in the caller's transaction. */
import type { Queryable } from "../db/queryable.ts";
import { pgqCall } from "./errors.ts";
import { toSafeInt } from "./numbers.ts";

export interface NewEvent {
  type: string;
  data: string | null;
  extra1?: string | null;
  extra2?: string | null;
  extra3?: string | null;
  extra4?: string | null;
}

/**
 * Inserts an event; it is delivered only if the caller's transaction
 * commits. Pass a client inside BEGIN to group it with other writes.
 * Returns the event id.
 */
export async function insertEvent(db: Queryable, queue: string, event: NewEvent): Promise<number> {
  const { rows } = await pgqCall(
    db.query<{ id: string }>("select pgq.insert_event($1, $2, $3, $4, $5, $6, $7) as id", [
      queue,
      event.type,
      event.data,
      event.extra1 ?? null,
      event.extra2 ?? null,
      event.extra3 ?? null,
      event.extra4 ?? null,
    ]),
  );
  return toSafeInt(rows[0]!.id);
}
