/**
 * SQL text helpers (shared/db/sql-text.ts): quoting of identifiers and
 * literals, qualified names, and the one rule for which rows a statement
 * on a table reaches.
 */
import { describe, expect, it } from "vitest";
import { ownRows, qualifiedName, quoteIdent, quoteLiteral, typedLiteral } from "../../shared/db/sql-text.ts";

describe("sql text", () => {
  it("quotes identifiers and literals, keeping every character", () => {
    expect(quoteIdent("plain")).toBe('"plain"');
    expect(quoteIdent('Odd "Schema"')).toBe('"Odd ""Schema"""');
    expect(qualifiedName("my schema", 'T"')).toBe('"my schema"."T"""');
    expect(quoteLiteral("it's \\ ok")).toBe("'it''s \\ ok'");
    expect(typedLiteral("1", "integer")).toBe("'1'::integer");
    expect(typedLiteral(null, "text")).toBe("NULL");
  });

  it("a table's own rows: only, except for a partitioned table", () => {
    expect(ownRows('public."T"', "r")).toBe('only public."T"');
    expect(ownRows('public."T"', "p")).toBe('public."T"');
  });
});
