/**
 * Applying repair's fix statements on the subscriber, a chunk per round
 * trip (replay is held meanwhile), each statement checked to have changed
 * exactly the one row it is about. A statement that changes no row (a
 * table it does not reach, a subscriber trigger or rule that swallows it)
 * or several would leave the table different while the reply says
 * "repaired": it is an error instead, and the caller rolls the table's
 * fixes back.
 */
import type { Queryable } from "../../shared/db/queryable.ts";
import type { RowDiff } from "../../shared/londiste/compare/merge.ts";
import { diffKey, showKey, type TablePlan } from "../../shared/londiste/compare/plan.ts";

export interface Fix {
  diff: RowDiff;
  statement: string;
}

/** Longest part of a statement quoted in an error (values can be large). */
const SHOWN_STATEMENT = 300;

export class FixRowCountError extends Error {
  constructor(
    message: string,
    readonly statement: string,
    readonly rows: number,
  ) {
    super(message);
    this.name = "FixRowCountError";
  }
}

/** Runs the fixes in order as one multi-statement query; throws FixRowCountError for the first that changed other than one row. */
export async function applyFixStatements(db: Queryable, plan: TablePlan, fixes: readonly Fix[]): Promise<void> {
  if (fixes.length === 0) return;
  // A query of several statements answers with one result per statement.
  const answer: unknown = await db.query(fixes.map((f) => f.statement).join("\n"));
  const results = (Array.isArray(answer) ? answer : [answer]) as Array<{ rowCount: number | null }>;
  if (results.length !== fixes.length) {
    throw new Error(`${plan.dest}: ${fixes.length} fix statements gave ${results.length} results`);
  }
  for (let i = 0; i < fixes.length; i++) {
    const rows = results[i]!.rowCount ?? 0;
    if (rows === 1) continue;
    const { diff, statement } = fixes[i]!;
    const shown = statement.length > SHOWN_STATEMENT ? `${statement.slice(0, SHOWN_STATEMENT)}...` : statement;
    throw new FixRowCountError(
      `${plan.dest}: the ${diff.kind} of the row with key ${showKey(diffKey(plan, diff))} changed ${rows} rows, not 1 (${shown})`,
      statement,
      rows,
    );
  }
}
