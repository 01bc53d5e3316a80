// Which relations londiste never replicates (shared/londiste/replicable.ts), by schema and persistence.
import { describe, expect, it } from "vitest";
import { notReplicableReason, PROJECT_SCHEMAS } from "../../shared/londiste/replicable.ts";

describe("relations that are never replicated", () => {
  it.each([
    ["pgq", "p", "refused: schema pgq belongs to PgQ itself, whose tables are never replicated"],
    ["londiste", "p", "refused: schema londiste belongs to londiste itself, whose tables are never replicated"],
    ["londiste", null, "refused: schema londiste belongs to londiste itself, whose tables are never replicated"],
    ["pg_catalog", "p", "refused: pg_catalog is a system schema, whose tables are never replicated"],
    ["information_schema", "p", "refused: information_schema is a system schema, whose tables are never replicated"],
    ["pg_toast", "p", "refused: pg_toast is a system schema, whose tables are never replicated"],
    ["pg_temp_3", "t", "refused: a temporary table lives only in the session that made it and cannot be replicated"],
    ["pg_temp_3", null, "refused: a temporary table lives only in the session that made it and cannot be replicated"],
  ])("%s (persistence %s)", (schema, persistence, reason) => {
    expect(notReplicableReason({ schema, persistence })).toBe(reason);
  });

  it("ordinary tables, unlogged ones and names that only look alike are fine", () => {
    for (const schema of ["public", "app", "PGQ", "londiste2", "pgq_data", "Pg_catalog"]) {
      expect(notReplicableReason({ schema, persistence: "p" }), schema).toBeUndefined();
    }
    expect(notReplicableReason({ schema: "public", persistence: "u" })).toBeUndefined();
    expect(notReplicableReason({ schema: "public", persistence: null })).toBeUndefined();
    expect(Object.keys(PROJECT_SCHEMAS)).toEqual(["pgq", "londiste"]);
  });
});
