/**
 * The value-text contract (shared/db/value-text.ts) against a real
 * server: the capture trigger (PL/pgSQL, which cannot import the module)
 * pins exactly its output settings, and every setting is one the server
 * takes, both as SET statements and as startup options, reading back as
 * the value pinned.
 */
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PINNED_SESSION_OPTIONS } from "../../shared/config/dsn.ts";
import { OUTPUT_SETTINGS, setStatements, settingsNamed, startupOptions, VALUE_TEXT_SETTINGS } from "../../shared/db/value-text.ts";
import { APPLY_SETTINGS_SQL } from "../../shared/londiste/apply.ts";
import { PINNED_SETTINGS } from "../../shared/londiste/compare/settings.ts";
import { installLondiste } from "../../shared/londiste/install.ts";
import { installPgq } from "../../shared/pgq/index.ts";
import { createTestDatabase, type TestDatabase } from "../support/db.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase("value_text");
});

afterAll(async () => {
  await db?.drop();
});

const shown = (settings: ReadonlyArray<readonly [string, string]>) => settings.map(([name, value]) => `${name}=${value}`).sort();

async function currentSettings(client: pg.ClientBase, names: string[]): Promise<string[]> {
  const { rows } = await client.query<{ s: string }>(
    "select n || '=' || pg_catalog.current_setting(n) as s from pg_catalog.unnest($1::text[]) n order by 1",
    [names],
  );
  return rows.map((r) => r.s);
}

describe("value-text settings", () => {
  it("the capture trigger of a column whose text depends on every setting pins exactly OUTPUT_SETTINGS", async () => {
    await installPgq(db.pool);
    await installLondiste(db.pool);
    await db.query("select pgq.create_queue('vt_q')");
    // refcursor is outside the capture's list of types known not to depend on any setting: all are pinned.
    await db.query("create table vt_all (id int primary key, c refcursor)");
    const { rows } = await db.query<{ fn: string }>("select londiste.create_capture('vt_q', 'vt_all'::regclass) as fn");
    expect(rows).toHaveLength(1);
    const { rows: config } = await db.query<{ proconfig: string[] }>(
      `select p.proconfig from pg_proc p
        where p.pronamespace = 'londiste'::regnamespace
          and p.proname = 'capture_' || 'vt_all'::regclass::oid || '_' || (select queue_id from pgq.queue where queue_name = 'vt_q')`,
    );
    expect(config).toHaveLength(1);
    expect([...config[0]!.proconfig].sort()).toEqual(shown(OUTPUT_SETTINGS));
  });

  it("every setting is taken by the server as SET and as a startup option, and reads back as pinned", async () => {
    const names = PINNED_SETTINGS.map(([name]) => name);
    const byName = (list: string[]) => [...list].sort((a, b) => a.localeCompare(b));
    const expected = byName(shown(PINNED_SETTINGS));

    const client = await db.pool.connect();
    try {
      await client.query(
        "set datestyle = 'SQL, DMY'; set intervalstyle = 'sql_standard'; set timezone = 'Asia/Kathmandu'; set extra_float_digits = 0; " +
          "set bytea_output = 'escape'; set standard_conforming_strings = off; set array_nulls = off",
      );
      await client.query(setStatements(PINNED_SETTINGS));
      expect(byName(await currentSettings(client, names))).toEqual(expected);

      // The apply step pins the same for its transaction only.
      await client.query("reset all");
      await client.query("set datestyle = 'German'");
      await client.query("begin");
      await client.query(APPLY_SETTINGS_SQL);
      expect(byName(await currentSettings(client, VALUE_TEXT_SETTINGS.map(([n]) => n)))).toEqual(byName(shown(VALUE_TEXT_SETTINGS)));
      await client.query("rollback");
      expect((await client.query<{ d: string }>("select pg_catalog.current_setting('DateStyle') as d")).rows[0]!.d).toBe("German, DMY");
    } finally {
      client.release(true);
    }

    const started = new pg.Client({ connectionString: db.url, options: startupOptions(PINNED_SETTINGS) });
    await started.connect();
    try {
      expect(byName(await currentSettings(started, names))).toEqual(expected);
    } finally {
      await started.end();
    }
  });

  it("the driver's session options are a subset of the contract", () => {
    expect(PINNED_SESSION_OPTIONS).toBe(startupOptions(settingsNamed("DateStyle", "IntervalStyle", "array_nulls")));
    expect(PINNED_SESSION_OPTIONS).toBe("-c DateStyle=ISO,YMD -c IntervalStyle=postgres -c array_nulls=on");
    expect(() => settingsNamed("work_mem")).toThrow(/not a value-text setting/);
  });
});
