/**
 * Error messages in the services' log lines: an error that wraps another
 * with the same text (a PgqError around the database error it classifies)
 * is logged with that text once, while a cause with more to say is still
 * joined to the message.
 */
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../shared/log.ts";
import { toPgqError } from "../../shared/pgq/index.ts";

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n")) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ service: "test", job: "j", pretty: false, destination }), lines };
}

/** What node-postgres throws for a RAISE EXCEPTION. */
function databaseError(message: string): Error {
  return Object.assign(new Error(message), { code: "P0001", severity: "ERROR" });
}

describe("logged error messages", () => {
  it("a PgqError around the database error says its message once", () => {
    const { log, lines } = capture();
    const error = toPgqError(databaseError("Not subscriber to queue: q/c"));
    expect((error as Error).cause).toBeInstanceOf(Error);
    log.error({ err: error }, "replay failed; retrying");
    expect((lines[0]!.err as { message: string }).message).toBe("Not subscriber to queue: q/c");
  });

  it("a cause with its own text is still joined", () => {
    const { log, lines } = capture();
    log.error({ err: new Error("copy failed", { cause: new Error("disk full") }) }, "oops");
    expect((lines[0]!.err as { message: string }).message).toBe("copy failed: disk full");
  });
});
