import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { LONDISTE_SCHEMA_VERSION, londisteSchemaVersion, installLondiste } from "../../shared/londiste/install.ts";
import { createTestDatabase } from "../support/db.ts";

describe("londiste schema version", () => {
  it("the code expects the highest migration in sql/londiste/structure, and install reaches it", async () => {
    const dir = new URL("../../sql/londiste/structure/", import.meta.url);
    const versions = readdirSync(dir)
      .filter((f) => /^\d{3}_.*\.sql$/.test(f))
      .map((f) => Number(/version = (\d+)\)/.exec(readFileSync(new URL(f, dir), "utf8"))![1]));
    expect(Math.max(...versions)).toBe(LONDISTE_SCHEMA_VERSION);
    const db = await createTestDatabase("lond_version");
    try {
      expect(await londisteSchemaVersion(db.pool)).toBe(0);
      await installLondiste(db.pool);
      expect(await londisteSchemaVersion(db.pool)).toBe(LONDISTE_SCHEMA_VERSION);
    } finally {
      await db.drop();
    }
  });
});
