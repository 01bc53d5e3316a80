import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseIni, resolveSection } from "../../shared/config/ini.ts";
import { parseKeywordDsn, PINNED_SESSION_OPTIONS, redactDsn, toPgConfig } from "../../shared/config/dsn.ts";
import { type ConfigSchema, envName, loadConfigText } from "../../shared/config/load.ts";

const schema: ConfigSchema = {
  job_name: { kind: "string", description: "job name", default: "pgqadm" },
  db: { kind: "dsn", description: "database", required: true, secret: true },
  loop_delay: { kind: "number", description: "seconds between ticks", default: "1.0", min: 0 },
  maint_delay: { kind: "integer", description: "seconds between maintenance", default: "300" },
  logfile: { kind: "string", description: "log file" },
  use_skylog: { kind: "boolean", description: "skylog", default: "0" },
};

describe("INI files as Skytools writes them", () => {
  it("reads sections, comments, continuation lines and interpolation", () => {
    const file = parseIni(
      [
        "# comment",
        "[DEFAULT]",
        "base = /var/log",
        "[pgqadm]",
        "job_name = ticker_main",
        "; another comment",
        "logfile = %(base)s/%(job_name)s.log",
        "pidfile: /tmp/%(job_name)s.pid",
        "long = first",
        "   second",
        "pct = 100%%",
      ].join("\n"),
      "t.ini",
    );
    const values = resolveSection(file, "pgqadm");
    expect(values.get("logfile")?.value).toBe("/var/log/ticker_main.log");
    expect(values.get("pidfile")?.value).toBe("/tmp/ticker_main.pid");
    expect(values.get("long")?.value).toBe("first\nsecond");
    expect(values.get("pct")?.value).toBe("100%");
  });

  it("rejects loops, unknown references and stray percent signs", () => {
    const loop = parseIni("[a]\nx = %(y)s\ny = %(x)s\n", "t.ini");
    expect(() => resolveSection(loop, "a")).toThrow(/interpolation loop/);
    const unknown = parseIni("[a]\nx = %(nope)s\n", "t.ini");
    expect(() => resolveSection(unknown, "a")).toThrow(/unknown key %\(nope\)s/);
    const stray = parseIni("[a]\nx = 50% off\n", "t.ini");
    expect(() => resolveSection(stray, "a")).toThrow(/t.ini:2: bad '%'/);
  });

  it("rejects duplicate keys and lines it cannot read, with the line number", () => {
    expect(() => parseIni("[a]\nx = 1\nx = 2\n", "t.ini")).toThrow("t.ini:3: key x appears twice");
    expect(() => parseIni("[a]\njust words\n", "t.ini")).toThrow("t.ini:2: cannot read line");
    expect(() => parseIni("x = 1\n", "t.ini")).toThrow("t.ini:1: key outside of any [section]");
  });
});

describe("connection strings", () => {
  it("accepts libpq keyword form with quoting", () => {
    expect(parseKeywordDsn("dbname=provider host=127.0.0.1 port=5432 password='a b\\'c'")).toEqual(
      new Map([
        ["dbname", "provider"],
        ["host", "127.0.0.1"],
        ["port", "5432"],
        ["password", "a b'c"],
      ]),
    );
    expect(toPgConfig("dbname=provider host=127.0.0.1 port=5432 user=postgres")).toEqual({
      database: "provider",
      host: "127.0.0.1",
      port: 5432,
      user: "postgres",
      options: PINNED_SESSION_OPTIONS,
    });
    expect(toPgConfig("dbname=p options='-c work_mem=64MB'").options).toBe(`-c work_mem=64MB ${PINNED_SESSION_OPTIONS}`);
  });

  it("accepts URLs and rejects garbage", () => {
    expect(toPgConfig("postgres://u@h:5432/d")).toEqual({ connectionString: "postgres://u@h:5432/d", options: PINNED_SESSION_OPTIONS });
    expect(toPgConfig("postgres://u@h:5432/d?options=-c%20work_mem%3D64MB&sslmode=disable")).toEqual({
      connectionString: "postgres://u@h:5432/d?sslmode=disable",
      options: `-c work_mem=64MB ${PINNED_SESSION_OPTIONS}`,
    });
    expect(() => toPgConfig("dbname=x colour=blue")).toThrow("unknown keyword colour");
    expect(() => toPgConfig("dbname=x port=99999")).toThrow("bad port");
    expect(() => toPgConfig("")).toThrow("empty");
  });

  it("sslmode as libpq reads it: require encrypts only, verify-ca checks the CA, verify-full also the host; files are read", () => {
    const dir = mkdtempSync(join(tmpdir(), "dsn-ssl-"));
    try {
      writeFileSync(join(dir, "root.crt"), "ROOT CERT");
      expect(toPgConfig("host=h sslmode=require").ssl).toEqual({ rejectUnauthorized: false });
      expect(toPgConfig("host=h sslmode=prefer").ssl).toBeUndefined();
      const full = toPgConfig(`host=h sslmode=verify-full sslrootcert=${join(dir, "root.crt")}`).ssl as Record<string, unknown>;
      expect(full).toEqual({ ca: "ROOT CERT" });
      const ca = toPgConfig(`host=h sslmode=verify-ca sslrootcert=${join(dir, "root.crt")}`).ssl as Record<string, unknown>;
      expect(ca.ca).toBe("ROOT CERT");
      expect(typeof ca.checkServerIdentity).toBe("function");
      expect((toPgConfig(`host=h sslmode=require sslrootcert=${join(dir, "root.crt")}`).ssl as Record<string, unknown>).rejectUnauthorized).toBeUndefined();
      expect(() => toPgConfig(`host=h sslmode=verify-full sslrootcert=${join(dir, "missing.crt")}`)).toThrow(/sslrootcert: cannot read .*missing\.crt: ENOENT/);
      expect(() => toPgConfig("host=h sslmode=sometimes")).toThrow('sslmode must be disable, allow, prefer, require, verify-ca or verify-full, not "sometimes"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("redacts passwords in both forms", () => {
    expect(redactDsn("postgres://u:secret@h/d")).toBe("postgres://u:***@h/d");
    expect(redactDsn("dbname=d password=secret host=h")).toBe("dbname=d password=*** host=h");
    expect(redactDsn("dbname=d password='s e c' host=h")).toBe("dbname=d password=*** host=h");
  });
});

describe("loading a program's config", () => {
  it("types values, fills defaults and interpolates job_name", () => {
    const values = loadConfigText(
      "[pgqadm]\njob_name = t1\ndb = dbname=x\nlogfile = /tmp/%(job_name)s.log\nloop_delay = 0.1\n",
      "c.ini",
      "pgqadm",
      schema,
      {},
    );
    expect(values).toEqual({
      job_name: "t1",
      db: "dbname=x",
      loop_delay: 0.1,
      maint_delay: 300,
      logfile: "/tmp/t1.log",
      use_skylog: false,
    });
  });

  it("lets environment variables override keys", () => {
    expect(envName("pgqadm", "db")).toBe("PGQADM_DB");
    const values = loadConfigText("[pgqadm]\ndb = dbname=x\n", "c.ini", "pgqadm", schema, {
      PGQADM_DB: "dbname=y",
      PGQADM_LOOP_DELAY: "2",
    });
    expect(values.db).toBe("dbname=y");
    expect(values.loop_delay).toBe(2);
  });

  it("stops on unknown, missing and bad keys with one clear line", () => {
    expect(() => loadConfigText("[pgqadm]\ndb = dbname=x\ncolour = red\n", "c.ini", "pgqadm", schema, {})).toThrow(
      "c.ini:3: [pgqadm] colour: unknown key",
    );
    expect(() => loadConfigText("[pgqadm]\njob_name = x\n", "c.ini", "pgqadm", schema, {})).toThrow(
      "c.ini: [pgqadm] db: missing (database)",
    );
    expect(() => loadConfigText("[pgqadm]\ndb = dbname=x\nloop_delay = fast\n", "c.ini", "pgqadm", schema, {})).toThrow(
      'c.ini:3: [pgqadm] loop_delay: not a number: "fast"',
    );
    expect(() => loadConfigText("[pgqadm]\ndb = dbname=x\n", "c.ini", "pgqadm", schema, { PGQADM_MAINT_DELAY: "1.5" })).toThrow(
      "PGQADM_MAINT_DELAY (environment): [pgqadm] maint_delay: not a whole number",
    );
    expect(() => loadConfigText("[other]\n", "c.ini", "pgqadm", schema, {})).toThrow("c.ini: section [pgqadm] is missing");
  });
});
