// Connection failures name the database they are about, without the password (shared/db/where.ts).
import pg from "pg";
import { describe, expect, it } from "vitest";
import { isConnectionError } from "../../shared/db/failure.ts";
import { clientNaming, databaseAddress } from "../../shared/db/where.ts";

describe("which database a failure is about", () => {
  it("host:port/database from keywords and from a URL; defaults where unset", () => {
    expect(databaseAddress({ host: "db1", port: 5433, database: "app" })).toBe("db1:5433/app");
    expect(databaseAddress({ connectionString: "postgres://u:secret@db2:6000/shop?sslmode=disable" })).toBe("db2:6000/shop");
    expect(databaseAddress({ connectionString: "postgres://u:secret@db2/shop" })).toMatch(/^db2:\d+\/shop$/);
  });

  it("a refused connection says side, host, port and database, keeps its code, and never shows the password", async () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    const config = { host: "127.0.0.1", port: 1, database: "shop", user: "u", password: "hunter2", connectionTimeoutMillis: 3000 };
    const pool = new pg.Pool({ ...config, Client: clientNaming("subscriber", config) });
    const error = await pool.query("select 1").then(
      () => undefined,
      (e: unknown) => e as Error & { code?: string },
    );
    await pool.end();
    expect(error?.message).toMatch(/^subscriber database at 127\.0\.0\.1:1\/shop: connect ECONNREFUSED/);
    expect(error?.message).not.toContain("hunter2");
    expect(error?.code).toBe("ECONNREFUSED");
    expect(isConnectionError(error)).toBe(true);
  });
});
