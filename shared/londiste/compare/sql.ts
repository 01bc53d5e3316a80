/** Quoting for SQL text built here: identifiers and literals. Pure. */

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A standard string literal (standard_conforming_strings = on: backslashes are plain characters). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** A value's literal cast to a type (`NULL` for null). castType is format_type output: SQL already. */
export function typedLiteral(value: string | null, castType: string): string {
  return value === null ? "NULL" : `${quoteLiteral(value)}::${castType}`;
}
