/**
 * SQL text built in TypeScript: identifiers and literals quoted, names
 * qualified, and the one rule for which rows a statement on a table
 * reaches. Every service and shared module builds SQL text with these.
 * Pure.
 */

/** A double-quoted identifier, exactly as written (case and any character kept). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** `"schema"."name"`, both parts quoted. */
export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/**
 * A standard string literal. Only right under standard_conforming_strings = on (pinned by
 * shared/db/value-text.ts), where a backslash is a plain character.
 */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** A value's literal cast to a type (`NULL` for null). castType is format_type output: SQL already. */
export function typedLiteral(value: string | null, castType: string): string {
  return value === null ? "NULL" : `${quoteLiteral(value)}::${castType}`;
}

/**
 * The target of a DML, TRUNCATE or read statement meant for a table's own rows: `only <name>`,
 * so tables that inherit from it are left alone; but a partitioned table (relkind `p`) as
 * `<name>`, because its rows live only in its partitions, which `only` would leave out (UPDATE
 * and DELETE then silently change nothing, TRUNCATE refuses). `name` is an SQL name already
 * (the catalog's quoted form).
 */
export function ownRows(name: string, relkind: string): string {
  return relkind === "p" ? name : `only ${name}`;
}
