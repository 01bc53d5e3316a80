/**
 * The structure check of `subscriber add` and `subscriber check`
 * (Skytools' check_tables, with its reasons spelled out; docs/londiste.md,
 * "Commands"): may the provider
 * table's changes be applied to the subscriber table? Pure: it compares
 * two shapes read by table-shape.ts and the subscriber table's triggers.
 */
import type { TableShape } from "./table-shape.ts";

export interface TriggerInfo {
  name: string;
  /** Implements a foreign key (or another constraint). */
  internal: boolean;
  /** pg_trigger.tgenabled: O origin (default), D disabled, R replica only, A always. */
  enabled: string;
}

export interface TableCheck {
  /** Reasons the table cannot be added (without --force). */
  errors: string[];
  /** Differences that do not stop replication. */
  warnings: string[];
}

/** Triggers londiste itself puts on subscriber tables; they never count against a table. */
export const OWN_TRIGGERS = new Set(["londiste_deny_writes", "londiste_deny_truncate"]);

export function checkTablePair(
  table: string,
  provider: TableShape | null,
  subscriber: TableShape | null,
  subscriberTriggers: TriggerInfo[],
  destName: string = table,
): TableCheck {
  const errors: string[] = [];
  const warnings: string[] = [];
  if (!provider) errors.push(`${table}: no such table on the provider`);
  if (!subscriber) errors.push(`${destName}: no such table on the subscriber`);
  if (!provider || !subscriber) return { errors, warnings };
  const where = destName === table ? table : `${destName} (for ${table})`;

  if (provider.primaryKey.length === 0) errors.push(`${table}: the provider table has no primary key`);
  if (subscriber.primaryKey.length === 0) errors.push(`${where}: the subscriber table has no primary key`);
  for (const [name, column] of provider.columns) {
    const theirs = subscriber.columns.get(name);
    if (!theirs) {
      errors.push(`${where}: column ${JSON.stringify(name)} (${column.type}) does not exist on the subscriber`);
      continue;
    }
    const keyHere = provider.primaryKey.includes(name);
    const keyThere = subscriber.primaryKey.includes(name);
    if (keyHere !== keyThere) {
      errors.push(`${where}: column ${JSON.stringify(name)} is ${keyHere ? "" : "not "}in the primary key on the provider but ${keyThere ? "is" : "is not"} on the subscriber`);
    }
    if (theirs.type !== column.type) {
      warnings.push(`${where}: column ${JSON.stringify(name)} is ${column.type} on the provider, ${theirs.type} on the subscriber`);
    }
    if (theirs.generated && !column.generated) {
      warnings.push(`${where}: column ${JSON.stringify(name)} is generated on the subscriber: the provider's values are not applied`);
    }
  }
  for (const name of subscriber.columns.keys()) {
    if (!provider.columns.has(name)) warnings.push(`${where}: extra subscriber column ${JSON.stringify(name)} gets its default`);
  }
  const user = subscriberTriggers.filter((t) => !t.internal && !OWN_TRIGGERS.has(t.name));
  if (user.length > 0) {
    const names = user.map((t) => t.name).join(", ");
    errors.push(`${where}: the subscriber table has triggers: ${names} (replay does not fire them unless enabled ALWAYS/REPLICA; see "subscriber triggers")`);
  }
  if (subscriberTriggers.some((t) => t.internal)) {
    warnings.push(`${where}: foreign keys involve this table; replay does not check them (session_replication_role = replica)`);
  }
  return { errors, warnings };
}
