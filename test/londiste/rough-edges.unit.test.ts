/**
 * The pure parts behind the rough-edge fixes, without servers: where
 * `watch` starts (--since/--all), when `status` says the ticker is dead,
 * which requests under a service's prefix get `unknown_command`, the
 * quoting hint for names with a space, hints never doubled, and the job's
 * list of commands matching the londiste tool's command table.
 */
import { DeliverPolicy } from "@nats-io/jetstream";
import { describe, expect, it } from "vitest";
import { classifySubject, unknownCommandReply } from "../../shared/bus/command-service.ts";
import { UsageError } from "../../shared/cli/args.ts";
import { LONDISTE_JOB_COMMANDS, londisteUnknownCommands } from "../../shared/config/londiste.ts";
import { tickerWarning } from "../../shared/pgq/ticker-health.ts";
import { LONDISTE_COMMANDS, SERVICE_COMMANDS } from "../../services/londiste/commands.ts";
import { consumerStart, describeStart, watchStart } from "../../services/londiste/watch.ts";
import { quotingHint } from "../../services/replay/admin/context.ts";
import { withHint } from "../../services/replay/admin/add-checks.ts";

describe("watch --since / --all", () => {
  const now = new Date("2026-11-27T12:00:00Z");

  it("starts at new changes by default, after the stream's last message", () => {
    expect(watchStart({}, now)).toEqual({ from: "now" });
    expect(consumerStart({ from: "now" }, 41)).toEqual({ deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: 42 });
    expect(describeStart("shop", { from: "now" })).toContain("from now on (--since TIME or --all for history)");
  });

  it("--all from the oldest kept; --since an ISO time or an age", () => {
    expect(watchStart({ all: true }, now)).toEqual({ from: "all" });
    expect(consumerStart({ from: "all" }, 41)).toEqual({ deliver_policy: DeliverPolicy.All });
    expect(watchStart({ since: "2026-11-27T10:00:00Z" }, now)).toEqual({ from: "time", time: new Date("2026-11-27T10:00:00Z") });
    expect(watchStart({ since: "2026-11-26" }, now)).toEqual({ from: "time", time: new Date("2026-11-26T00:00:00Z") });
    expect(watchStart({ since: "30m" }, now)).toEqual({ from: "time", time: new Date("2026-11-27T11:30:00Z") });
    expect(watchStart({ since: "2h" }, now)).toEqual({ from: "time", time: new Date("2026-11-27T10:00:00Z") });
    expect(watchStart({ since: "1d" }, now)).toEqual({ from: "time", time: new Date("2026-11-26T12:00:00Z") });
    expect(consumerStart({ from: "time", time: now }, 41)).toEqual({ deliver_policy: DeliverPolicy.StartTime, opt_start_time: now.toISOString() });
  });

  it("refuses what is not a time, and --since with --all", () => {
    for (const bad of ["yesterday", "2026", "30", "5 weeks", "2026-13-45"]) {
      expect(() => watchStart({ since: bad }, now), bad).toThrow(UsageError);
    }
    expect(() => watchStart({ since: "1h", all: true }, now)).toThrow("--since and --all do not go together");
  });

  it("is a watch option, refused elsewhere", () => {
    expect(SERVICE_COMMANDS.watch!.options).toEqual(expect.arrayContaining(["since", "all", "json"]));
  });
});

describe("ticker warning in status", () => {
  const queue = { queueName: "q", tickerIdlePeriodSeconds: 60, tickerPaused: false };

  it("is quiet while ticks come within the idle period and its slack", () => {
    expect(tickerWarning({ ...queue, tickerLagSeconds: 3 })).toBeNull();
    expect(tickerWarning({ ...queue, tickerLagSeconds: 119 })).toBeNull();
    expect(tickerWarning({ ...queue, tickerLagSeconds: null })).toBeNull();
  });

  it("asks whether the ticker runs once ticks stopped; says when ticking is paused", () => {
    expect(tickerWarning({ ...queue, tickerLagSeconds: 121.7 })).toBe("no tick for 121 s: is the ticker running?");
    expect(tickerWarning({ ...queue, tickerIdlePeriodSeconds: 1, tickerLagSeconds: 6.5 })).toBe("no tick for 6 s: is the ticker running?");
    expect(tickerWarning({ ...queue, tickerIdlePeriodSeconds: 1, tickerLagSeconds: 5.5 })).toBeNull();
    expect(tickerWarning({ ...queue, tickerPaused: true, tickerLagSeconds: 500 })).toContain("ticking is paused for queue q");
  });
});

describe("requests under a service's prefix", () => {
  const job = londisteUnknownCommands("shop");
  const replayOwn = ["status", "provider.add", "subscriber.add", "ping", "stop", "reload"];

  it("own commands and published subjects are left alone; commands of other services are theirs; the rest is unknown", () => {
    expect(classifySubject("status", replayOwn, job)).toBe("own");
    expect(classifySubject("compare", replayOwn, job)).toBe("other-service");
    expect(classifySubject("repair", replayOwn, job)).toBe("other-service");
    expect(classifySubject("events.public_t", replayOwn, job)).toBe("not-a-command");
    expect(classifySubject("copy.request", replayOwn, job)).toBe("not-a-command");
    expect(classifySubject("copy.progress.public_t", replayOwn, job)).toBe("not-a-command");
    expect(classifySubject("repair.progress", replayOwn, job)).toBe("not-a-command");
    expect(classifySubject("frobnicate", replayOwn, job)).toBe("unknown");
    expect(classifySubject("subscriber.ad", replayOwn, job)).toBe("unknown");
    expect(classifySubject("eventsx", replayOwn, job)).toBe("unknown");
  });

  it("unknown_command names the subject and lists the commands", () => {
    const reply = unknownCommandReply("stauts", "skytools.londiste.shop", ["status", "ping"]);
    expect(reply).toEqual({ error: { code: "unknown_command", message: 'no command "stauts" on skytools.londiste.shop; the commands: ping, status' } });
  });

  it("the job's command list is the londiste tool's command table", () => {
    const tool = Object.keys(LONDISTE_COMMANDS).map((c) => c.replace(" ", "."));
    expect([...LONDISTE_JOB_COMMANDS].sort()).toEqual(tool.sort());
  });
});

describe("messages", () => {
  it("a name with a space hints at SQL quoting, inside shell quotes", () => {
    expect(quotingHint("my table")).toBe(` (a name with a space needs SQL double quotes, inside shell quotes: '"my table"')`);
    expect(quotingHint("sales.my table")).toBe(` (a name with a space needs SQL double quotes, inside shell quotes: 'sales."my table"')`);
    expect(quotingHint("my schema.t")).toContain(`'"my schema.t"'`);
    expect(quotingHint("public.t")).toBe("");
    expect(quotingHint('public."my table"')).toBe("");
  });

  it("a hint is appended once", () => {
    expect(withHint("bad", "(--force adds it anyway)")).toBe("bad (--force adds it anyway)");
    expect(withHint("bad (--force adds it anyway)", "(--force adds it anyway)")).toBe("bad (--force adds it anyway)");
  });
});
