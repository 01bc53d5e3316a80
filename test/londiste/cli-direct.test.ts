/**
 * Setting up without services: `pgqadm --sql-dir` points psql at the SQL
 * files, and the commands that only set up a database (`pgqadm CONF
 * install`, `londiste CONF provider install`, `subscriber install`,
 * `subscriber register`, `subscriber unregister`) work with NATS not even
 * reachable, on the databases directly, and say so; everything else still
 * needs its service (exit 3). Hints name commands as the user can paste
 * them. The Skytools order with services started in between is
 * cli-skytools-order.test.ts.
 */
import { execFile } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase, uniqueSubjectPrefix } from "../support/db.ts";
import { freePort } from "../support/local-postgres.ts";
import { expectOk, runPgqadm, show, writeTickerConfig } from "../support/pgqadm.ts";
import { makeTempDir, REPO_ROOT } from "../support/processes.ts";
import { LONDISTE_LAUNCHER } from "./job.ts";

const run = promisify(execFile);
let provider: TestDatabase;
let subscriber: TestDatabase;
let scratch: TestDatabase;
let dir: string;
let tickerConf: string;
let conf: string;

const londiste = (...args: string[]) => runPgqadm([conf, ...args], { command: [process.execPath, LONDISTE_LAUNCHER] });
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

beforeAll(async () => {
  [provider, subscriber, scratch] = await Promise.all([
    createTestDatabase("lond_direct_p"),
    createTestDatabase("lond_direct_s"),
    createTestDatabase("lond_direct_psql"),
  ]);
  dir = makeTempDir("lond_direct");
  // Nothing listens on this port: no service can answer, NATS cannot even be reached.
  const nats = `nats://127.0.0.1:${await freePort()}`;
  const prefix = uniqueSubjectPrefix("direct");
  tickerConf = writeTickerConfig(dir, { db: provider.url, natsUrl: nats, subjectPrefix: prefix, file: "ticker.ini" });
  conf = join(dir, "londiste.ini");
  writeFileSync(
    conf,
    ["[londiste]", "job_name = direct", `provider_db = ${provider.url}`, `subscriber_db = ${subscriber.url}`, "pgq_queue_name = replika", `nats_url = ${nats}`, `subject_prefix = ${prefix}`, ""].join("\n"),
  );
});

afterAll(async () => {
  await Promise.all([provider?.drop(), subscriber?.drop(), scratch?.drop()]);
});

describe("SQL files without the tools", () => {
  it('psql -f "$(pgqadm --sql-dir)/pgq/install.sql" installs PgQ, and londiste/install.sql londiste', async () => {
    const r = await runPgqadm(["--sql-dir"]);
    const sqlDir = expectOk(r).trim();
    expect(existsSync(join(sqlDir, "pgq", "install.sql")), show(r)).toBe(true);
    expect(existsSync(join(sqlDir, "londiste", "install.sql")), show(r)).toBe(true);
    const pgqadm = `${JSON.stringify(process.execPath)} services/cli/pgqadm.js`;
    for (const part of ["pgq", "londiste"]) {
      await run("sh", ["-c", `psql -q -v ON_ERROR_STOP=1 -f "$(${pgqadm} --sql-dir)/${part}/install.sql" "$1"`, "sh", scratch.url], { cwd: REPO_ROOT });
    }
    const { rows } = await scratch.query("select pgq.version() as v, (select max(version) from londiste.schema_migration) as l");
    expect(rows[0].v).toBe("2.1.4");
    expect(rows[0].l).toBeGreaterThan(0);
    expect((await runPgqadm(["--sql-dir", tickerConf])).code).toBe(2);
  });
});

describe("set-up commands with no service and no NATS", () => {
  it("pgqadm CONF install installs PgQ directly and says so", async () => {
    const out = expectOk(await runPgqadm([tickerConf, "install"]));
    expect(out).toContain("pgq_version: 2.1.4");
    expect(out).toContain("no ticker of job ticktest is running: installed directly in the database");
    // anything else needs the ticker
    const status = await runPgqadm([tickerConf, "--timeout", "2", "status"]);
    expect(status.code, show(status)).toBe(3);
  });

  it("subscriber register before the subscriber is installed: refused with a hint the user can paste", async () => {
    const r = await londiste("subscriber", "register");
    expect(r.code, show(r)).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`subscriber register failed \\(conflict\\): londiste is not installed on the subscriber: run "(npx )?londiste ${escape(conf)} subscriber install" first`),
    );
  });

  it("provider install, subscriber install, register and unregister run on the databases and say so", async () => {
    const direct = /no service of job direct is running: done directly on the databases/;
    const provided = expectOk(await londiste("provider", "install"));
    expect(provided).toMatch(/queue: replika\nqueue_created: true/);
    expect(provided).toMatch(direct);
    expect(expectOk(await londiste("subscriber", "install"))).toMatch(direct);

    const registered = JSON.parse(expectOk(await londiste("--json", "subscriber", "register"))) as Record<string, unknown>;
    expect(registered).toMatchObject({ consumer: "direct", registered: true, direct: true });
    expect((await provider.query("select consumer_name from pgq.get_consumer_info('replika')")).rows).toEqual([{ consumer_name: "direct" }]);

    // a table in the set goes back to (none) on unregister
    await subscriber.query("select londiste.subscriber_add_table('replika', 'public.t1')");
    await subscriber.query("update londiste.subscriber_table set merge_state = 'ok' where table_name = 'public.t1'");
    const unregistered = expectOk(await londiste("subscriber", "unregister"));
    expect(unregistered).toMatch(/unregistered: true\nwas_registered: true\ntables_reset: 1/);
    expect(unregistered).toMatch(direct);
    expect((await provider.query("select * from pgq.get_consumer_info('replika')")).rows).toEqual([]);
    expect((await subscriber.query("select merge_state from londiste.subscriber_table")).rows).toEqual([{ merge_state: null }]);

    // everything else goes over NATS
    const tables = await londiste("--timeout", "2", "subscriber", "tables");
    expect(tables.code, show(tables)).toBe(3);
    expect(tables.stderr).toContain("cannot connect to NATS");
  });
});
