/**
 * `pgqadm CONF logs` without a database: its options (services/pgqadm/logs.ts),
 * the query they make (filters as parameters, newest N shown oldest first)
 * and the line printed per record.
 */
import { describe, expect, it } from "vitest";
import { UsageError } from "../../shared/cli/args.ts";
import { formatLogRow, logsFilter, logsQuery } from "../../services/pgqadm/logs.ts";

const NOW = new Date("2026-12-05T12:00:00Z");

describe("pgqadm logs", () => {
  it("reads --since as an age or a date, --level as the lowest level, --limit as a count", () => {
    expect(logsFilter({ since: "30m", level: "WARN", service: "replay", limit: "5" }, NOW)).toEqual({
      since: new Date("2026-12-05T11:30:00Z"),
      minLevel: 40,
      service: "replay",
      limit: 5,
    });
    expect(logsFilter({ since: "2026-12-01T10:00:00Z" }, NOW).since).toEqual(new Date("2026-12-01T10:00:00Z"));
    expect(logsFilter({}, NOW)).toEqual({ limit: 200 });
  });

  it("refuses bad options with the fix", () => {
    expect(() => logsFilter({ level: "loud" })).toThrow(new UsageError("--level loud: use one of trace, debug, info, warn, error, fatal"));
    expect(() => logsFilter({ since: "yesterday" })).toThrow(/--since needs a date\/time .* got "yesterday"/);
    expect(() => logsFilter({ since: "2026" })).toThrow(UsageError);
    expect(() => logsFilter({ limit: "0" })).toThrow(/--limit needs a whole number/);
    expect(() => logsFilter({ limit: "2.5" })).toThrow(/--limit needs a whole number/);
  });

  it("passes every filter as a parameter and keeps the newest records, shown oldest first", () => {
    const q = logsQuery({ service: "x'; drop table logdb.record; --", since: NOW, minLevel: 40, limit: 10 });
    expect(q.values).toEqual(["x'; drop table logdb.record; --", "2026-12-05T12:00:00.000Z", 40, 10]);
    expect(q.text).not.toContain("drop table");
    expect(q.text).toContain("where service = $1 and time >= $2::timestamptz and level >= $3 order by time desc, id desc limit $4");
    expect(q.text).toMatch(/\) newest order by time, id$/);
    expect(logsQuery({ limit: 3 }).text).not.toContain("where");
  });

  it("prints one line per record with its other fields as JSON", () => {
    const row = {
      id: "1",
      time: new Date("2026-12-05T11:59:00.5Z"),
      level: 45,
      service: "ticker",
      job: "main",
      host: "db1",
      pid: 42,
      msg: "slow tick",
      record: { level: 45, time: 1, service: "ticker", job: "main", host: "db1", pid: 42, msg: "slow tick", queue: "q1", ms: 900 },
    };
    expect(formatLogRow(row)).toBe('2026-12-05T11:59:00.500Z  WARN   ticker  main  db1-42  slow tick  {"queue":"q1","ms":900}');
    expect(formatLogRow({ ...row, level: 30, record: { msg: "x" }, host: null, pid: null })).toBe("2026-12-05T11:59:00.500Z  INFO   ticker  main  ?-?  slow tick");
  });
});
