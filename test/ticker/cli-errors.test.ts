/**
 * pgqadm exit codes without a working service: 2 for bad usage or a bad
 * config file (naming the file and the key), 3 when no service answers
 * (naming the subject and how to start the ticker). The ticker itself
 * refuses a bad config with exit 2.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { databaseUrl, natsUrl, uniqueSubjectPrefix } from "../support/db.ts";
import { freePort } from "../support/local-postgres.ts";
import { makeTempDir, useProcessCleanup } from "../support/processes.ts";
import { runPgqadm, show, startTicker, writeTickerConfig } from "../support/pgqadm.ts";

useProcessCleanup();

let dir: string;
let conf: string;
let prefix: string;
const JOB = "nobody_home";

beforeAll(() => {
  dir = makeTempDir("cli-errors");
  prefix = uniqueSubjectPrefix("clierr");
  // Nobody serves this prefix: no ticker is started in this file.
  conf = writeTickerConfig(dir, { db: databaseUrl(), natsUrl: natsUrl(), subjectPrefix: prefix, jobName: JOB });
});

const COMMANDS = ["install", "create", "drop", "register", "unregister", "config", "status", "queue-rename", "show-batch-events", "del-event", "reg-copy", "reg-move", "ping", "stop", "reload"];

describe("usage errors → exit 2", () => {
  it("no arguments prints the help (exit 2); --help prints it with exit 0 and lists every command", async () => {
    const [none, help] = await Promise.all([runPgqadm([]), runPgqadm(["--help"])]);
    expect(none.code, show(none)).toBe(2);
    expect(none.stdout).toMatch(/^usage: pgqadm /);
    expect(help.code, show(help)).toBe(0);
    expect(help.stdout).toMatch(/^usage: pgqadm \[--json\] \[--timeout SECONDS\] CONFIG COMMAND \[ARGS\]/);
    for (const c of ["ticker", ...COMMANDS]) expect(help.stdout).toMatch(new RegExp(`^  ${c}\\b`, "m"));
  });

  it("unknown commands and options, missing or extra arguments, non-numeric numbers", async () => {
    const cases: Array<[string[], RegExp]> = [
      [[conf, "bogus"], /^pgqadm: unknown command "bogus" \(known: ticker, install, create, /],
      [[conf], /^pgqadm: no command given$/m],
      [[conf, "create"], /^pgqadm: usage: pgqadm CONFIG create QUEUE$/m],
      [[conf, "status", "extra"], /^pgqadm: usage: pgqadm CONFIG status$/m],
      [[conf, "show-batch-events", "abc"], /^pgqadm: BATCH must be a whole number, got "abc"$/m],
      [[conf, "del-event", "q", "c", "1; drop table pgq.queue"], /^pgqadm: EVENT must be a whole number, got "1; drop table pgq.queue"$/m],
      [[conf, "config", "q", "ticker_max_count"], /^pgqadm: expected KEY=VALUE, got "ticker_max_count"$/m],
      [["--bogus", conf, "status"], /^pgqadm: unknown option --bogus$/m],
      [["--timeout", "soon", conf, "status"], /^pgqadm: --timeout needs a number of seconds$/m],
    ];
    const results = await Promise.all(cases.map(([args]) => runPgqadm(args)));
    for (const [i, r] of results.entries()) {
      expect(r.code, `${cases[i]![0].join(" ")}\n${show(r)}`).toBe(2);
      expect(r.stderr, `${cases[i]![0].join(" ")}\n${show(r)}`).toMatch(cases[i]![1]);
    }
  });
});

describe("bad config files → exit 2 naming the file and the key", () => {
  it("for the command line and for the ticker", async () => {
    const file = (name: string, body: string) => {
      const path = join(dir, name);
      writeFileSync(path, body);
      return path;
    };
    const base = `[pgqadm]\ndb = ${databaseUrl()}\nnats_url = ${natsUrl()}\nsubject_prefix = ${prefix}\n`;
    const badNumber = file("bad-number.ini", `${base}loop_delay = fast\n`);
    const unknownKey = file("unknown-key.ini", `${base}loop_dealy = 1\n`);
    const noDb = file("no-db.ini", `[pgqadm]\nnats_url = ${natsUrl()}\n`);
    const badDsn = file("bad-dsn.ini", `[pgqadm]\ndb = host=localhost bogus=1\n`);
    const missing = join(dir, "does-not-exist.ini");

    const cases: Array<[string, RegExp]> = [
      [badNumber, new RegExp(`^pgqadm: ${escape(badNumber)}:5: \\[pgqadm\\] loop_delay: not a number: "fast"$`, "m")],
      [unknownKey, new RegExp(`^pgqadm: ${escape(unknownKey)}:5: \\[pgqadm\\] loop_dealy: unknown key$`, "m")],
      [noDb, new RegExp(`^pgqadm: ${escape(noDb)}: \\[pgqadm\\] db: missing`, "m")],
      [badDsn, new RegExp(`^pgqadm: ${escape(badDsn)}:2: \\[pgqadm\\] db: connection string: unknown keyword bogus$`, "m")],
      [missing, new RegExp(`^pgqadm: ${escape(missing)}: cannot read config file: ENOENT$`, "m")],
    ];
    const results = await Promise.all(cases.map(([path]) => runPgqadm([path, "status"])));
    for (const [i, r] of results.entries()) {
      expect(r.code, show(r)).toBe(2);
      expect(r.stderr, show(r)).toMatch(cases[i]![1]);
      expect(r.stdout).toBe("");
    }

    // The ticker reads the same file the same way and does not start.
    const tickers = [startTicker(badNumber, "ticker-bad-number"), startTicker(missing, "ticker-missing-file")];
    const exits = await Promise.all(tickers.map((t) => t.waitForExit(20_000)));
    expect(exits).toEqual([
      { code: 2, signal: null },
      { code: 2, signal: null },
    ]);
    expect(tickers[0]!.output).toContain(`${badNumber}:5: [pgqadm] loop_delay: not a number: "fast"`);
    expect(tickers[1]!.output).toContain(`${missing}: cannot read config file: ENOENT`);
  });
});

describe("nobody answers → exit 3", () => {
  it("no ticker running for the job: one line naming the subject and how to start the ticker", async () => {
    const [human, asJson] = await Promise.all([runPgqadm([conf, "status"]), runPgqadm([conf, "--json", "create", "q"])]);
    for (const [r, command] of [
      [human, "status"],
      [asJson, "create"],
    ] as const) {
      expect(r.code, show(r)).toBe(3);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n"), show(r)).toHaveLength(1);
      // NATS reports "no responders" at once when nobody subscribes to the subject.
      expect(r.stderr).toContain(`no service is listening on ${prefix}.pgqadm.${JOB}.${command}`);
      // Pasteable: `npx pgqadm` unless pgqadm is on the PATH.
      expect(r.stderr).toMatch(new RegExp(`start the ticker with "(npx )?pgqadm ${conf.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} ticker"`));
    }
  });

  it("NATS unreachable: exit 3 naming the NATS URL", async () => {
    const port = await freePort();
    const unreachable = writeTickerConfig(dir, {
      db: databaseUrl(),
      natsUrl: `nats://127.0.0.1:${port}`,
      subjectPrefix: prefix,
      file: "unreachable.ini",
    });
    const r = await runPgqadm([unreachable, "--timeout", "2", "ping"]);
    expect(r.code, show(r)).toBe(3);
    expect(r.stderr).toMatch(new RegExp(`^pgqadm: cannot connect to NATS at nats://127\\.0\\.0\\.1:${port}`));
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
