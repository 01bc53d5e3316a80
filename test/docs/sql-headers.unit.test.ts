/**
 * Every SQL function opens with a header, as the original PgQ sources do:
 * what it does, then `Calls:` and `Tables directly manipulated:`. These
 * tests read each body and check that the header names every function it
 * calls and every table it writes with a plain INSERT, UPDATE or DELETE,
 * so the headers cannot drift from the code (writes through dynamic SQL
 * are listed by hand and not checked here).
 */
import { describe, expect, it } from "vitest";
import { filesUnder, read, SQL_FUNCTIONS } from "./docs-helpers.ts";

interface Definition {
  file: string;
  name: string;
  header: string;
  body: string;
}

function definitions(file: string): Definition[] {
  const text = read(file);
  const out: Definition[] = [];
  const re = /create or replace function ([a-z_]+\.[a-z_0-9]+)\s*\(([\s\S]*?)\$(\w*)\$([\s\S]*?)\$\3\$/gi;
  let previousEnd = 0;
  let header = "";
  for (const m of text.matchAll(re)) {
    const before = text.slice(previousEnd, m.index);
    const at = before.lastIndexOf("-- Function:");
    // An overload right after another shares its header.
    if (at >= 0) header = before.slice(at);
    out.push({ file, name: m[1]!.toLowerCase(), header, body: m[4]! });
    previousEnd = m.index + m[0].length;
  }
  return out;
}

function section(header: string, title: string): string | undefined {
  const at = header.indexOf(`-- ${title}:`);
  if (at < 0) return undefined;
  const rest = header.slice(at).split("\n").slice(1);
  const lines: string[] = [];
  for (const line of rest) {
    if (!line.startsWith("--      ")) break;
    lines.push(line.slice(8));
  }
  return lines.join("\n");
}

const FILES = filesUnder("sql").filter((f) => /\/functions\/.*\.sql$/.test(f));
const DEFINITIONS = FILES.flatMap(definitions);

describe("SQL function headers", () => {
  it("every function has a header with Calls and Tables directly manipulated", () => {
    const missing = DEFINITIONS.filter(
      (d) => !d.header || section(d.header, "Calls") === undefined || section(d.header, "Tables directly manipulated") === undefined,
    ).map((d) => `${d.file}: ${d.name}`);
    expect(missing).toEqual([]);
  });

  it("Calls names every function of the schemas the body calls", () => {
    const problems: string[] = [];
    for (const d of DEFINITIONS) {
      const calls = section(d.header, "Calls") ?? "";
      for (const m of d.body.matchAll(/\b((?:pgq|londiste)\.[a-z_0-9]+)\s*\(/g)) {
        const called = m[1]!;
        if (called === d.name || !SQL_FUNCTIONS.has(called)) continue;
        if (!calls.includes(`${called}(`)) problems.push(`${d.file}: ${d.name} calls ${called}`);
      }
    }
    expect([...new Set(problems)]).toEqual([]);
  });

  it("Tables directly manipulated names every table the body inserts into, updates or deletes from", () => {
    const problems: string[] = [];
    for (const d of DEFINITIONS) {
      const tables = section(d.header, "Tables directly manipulated") ?? "";
      const writes = [
        ...[...d.body.matchAll(/\binsert\s+into\s+([a-z_]+\.[a-z_0-9]+)/gi)].map((m) => ["insert", m[1]!]),
        ...[...d.body.matchAll(/\bupdate\s+(?:only\s+)?([a-z_]+\.[a-z_0-9]+)\s/gi)].map((m) => ["update", m[1]!]),
        ...[...d.body.matchAll(/\bdelete\s+from\s+(?:only\s+)?([a-z_]+\.[a-z_0-9]+)/gi)].map((m) => ["delete", m[1]!]),
      ];
      for (const [op, table] of writes) {
        const listed = tables.split("\n").some((line) => line.includes(op!) && line.includes(table!));
        // The partitioned root stands for the slot tables it routes to.
        const viaRoot = table === "pgq.event_template" && tables.includes("through pgq.event_template");
        if (!listed && !viaRoot) problems.push(`${d.file}: ${d.name}: ${op} ${table}`);
      }
    }
    expect([...new Set(problems)]).toEqual([]);
  });
});
