import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadLondisteConfig } from "../../shared/config/londiste.ts";
import { decideBatch } from "../../shared/londiste/position.ts";

function write(body: string): string {
  const path = join(mkdtempSync(join(tmpdir(), "londiste-conf-")), "job.ini");
  writeFileSync(path, body);
  return path;
}

describe("[londiste] config", () => {
  it("reads a Skytools-style job file with defaults and interpolation", () => {
    const config = loadLondisteConfig(
      write(
        "[londiste]\njob_name = replika_job\nprovider_db = dbname=provider host=127.0.0.1\n" +
          "subscriber_db = postgres://u@h/sub\npgq_queue_name = londiste.replika\nlogfile = /tmp/%(job_name)s.log\n",
      ),
      {},
    );
    expect(config).toMatchObject({
      jobName: "replika_job",
      provider: { database: "provider", host: "127.0.0.1" },
      subscriber: { connectionString: "postgres://u@h/sub" },
      queue: "londiste.replika",
      consumer: "replika_job",
      loopDelayMs: 1000,
      onMissingRow: "error",
      ignoreTruncate: false,
      logfile: "/tmp/replika_job.log",
    });
  });

  it("refuses missing and bad keys with one clear line", () => {
    expect(() => loadLondisteConfig(write("[londiste]\nprovider_db = dbname=p\nsubscriber_db = dbname=s\n"), {})).toThrow(
      /\[londiste\] pgq_queue_name: missing/,
    );
    expect(() =>
      loadLondisteConfig(write("[londiste]\nprovider_db = dbname=p\nsubscriber_db = dbname=s\npgq_queue_name = q\non_missing_row = shrug\n"), {}),
    ).toThrow(/on_missing_row: must be error or log/);
    expect(() =>
      loadLondisteConfig(write("[londiste]\nprovider_db = dbname=p\nsubscriber_db = dbname=s\npgq_queue_name = q\nmethod = file_write\n"), {}),
    ).toThrow(/method: only "direct" is supported/);
  });
});

describe("replay's batch decision", () => {
  const batch = { prevTickId: 10, tickId: 14 };
  it("applies a batch that starts where the subscriber is, or the first batch", () => {
    expect(decideBatch(10, batch)).toEqual({ action: "apply" });
    expect(decideBatch(null, batch)).toEqual({ action: "apply" });
  });
  it("skips a batch whose end tick is recorded (applied, finish lost)", () => {
    expect(decideBatch(14, batch)).toEqual({ action: "skip" });
  });
  it("stops on any other position, behind or ahead, however close", () => {
    for (const recorded of [9, 11, 13, 15, 1000]) {
      const decision = decideBatch(recorded, batch);
      expect(decision.action).toBe("error");
      expect(decision.action === "error" && decision.message).toContain(`recorded tick ${recorded}`);
    }
  });
});
