/**
 * Hostile and malformed requests over NATS against every subject the
 * services of a job serve (the ticker, replay, a copy worker and a repair
 * worker, each its own process), found the way any client finds them
 * ($SRV.INFO). A fixed seed makes the run repeatable. Every reply must be a
 * result or an error with a documented code and a message; no service may
 * die or stop answering; neither database may change, since no request is
 * one that legitimately acts: requests to the commands that act without
 * naming anything (stop, drop, unregister, compare, repair, ...) are only
 * ever malformed, and every name sent is a hostile one no table or queue
 * has.
 */
import type { NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RequestSchema } from "../../shared/bus/validate.ts";
import { londisteAdminCommands } from "../../services/replay/admin-commands.ts";
import type { AdminContext } from "../../services/replay/admin/context.ts";
import { adminCommands } from "../../services/ticker/admin-commands.ts";
import { compareCommand } from "../../services/repair/compare.ts";
import { repairCommand } from "../../services/repair/repair.ts";
import { natsUrl } from "../support/db.ts";
import { connectNatsClient, requestAll } from "../support/nats.ts";
import { expectOk } from "../support/pgqadm.ts";
import { type ServiceProcess, useProcessCleanup } from "../support/processes.ts";
import { MachineClock, waitFor, waitForProgress } from "../support/wait.ts";
import { createLondisteJob, installJob, type LondisteJob } from "./job.ts";

useProcessCleanup();

const SEED = 0x5eed_13b;
/** The least number of requests the run must reach... */
const MIN_REQUESTS = 10_000;
/** ...within this much wall time (the machine may be loaded: the count is the assertion). */
const TIME_BOUND_MS = 60_000;
const IN_FLIGHT = 64;
const DOCUMENTED_CODES = new Set(["bad_request", "unknown_command", "not_found", "conflict", "unavailable", "internal"]);
/** Commands that act on the job as a whole, without a name to make harmless: only ever sent malformed. */
const ACTS_WITHOUT_NAMES = /\.(stop|reload|drop|create|register|unregister|config|queue-rename|reg-copy|reg-move|del-event|install|compare|repair)$/;

/** mulberry32: a small PRNG with a fixed seed, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(list: readonly T[]): T => list[int(list.length)]!;

const HOSTILE = [
  "'; drop table t; --", '"; drop table t; --', "t'||pg_sleep(5)||'", "x\"; select 1; --", '"a"."b"."c"', "a..b", ".", "",
  " ", "\t\n", "pgq.tick", "londiste.subscriber_table", "pg_catalog.pg_authid", "information_schema.tables", "pg_temp_1.t",
  "../../etc/passwd", "/etc/shadow", "$(touch /tmp/pwned)", "`id`", "%s%s%n", "{{7*7}}", "${process.exit()}", "*", ">", "a b",
  "\u202eevil", "\ud83d\ude00", "\u00e9t\u00e9", "Ω≈ç√", "x".repeat(63), "y".repeat(64), "z".repeat(299), "\\", "\\\\'", "'", '"',
  "__proto__", "constructor", "toString", "null", "undefined", "NaN", "-1", "0x41", "1e308", "public.\"T\u0001\"", "a\u0000b",
];

function hostileString(maxLength = 1000): string {
  const r = random();
  if (r < 0.75) return pick(HOSTILE);
  if (r < 0.9) return Array.from({ length: 1 + int(40) }, () => String.fromCharCode(32 + int(0x2fff))).join("");
  return "w".repeat(Math.max(0, maxLength - 2 + int(5))); // around the length limit
}

function anyValue(depth = 0): unknown {
  switch (int(depth > 3 ? 6 : 8)) {
    case 0: return hostileString();
    case 1: return pick([0, -1, 1, 2 ** 53, -(2 ** 63), 3.5, 1e308, -0]);
    case 2: return random() < 0.5;
    case 3: return null;
    case 4: return [hostileString(), int(10)];
    case 5: return { [hostileString()]: hostileString() };
    case 6: return Array.from({ length: int(4) }, () => anyValue(depth + 1));
    default: return Object.fromEntries(Array.from({ length: int(4) }, () => [hostileString(), anyValue(depth + 1)]));
  }
}

/** A request the service must refuse before any handler runs. */
function malformed(): string | Uint8Array {
  switch (int(7)) {
    // Bytes, often not even UTF-8. Never empty or all white space: that is the empty request `{}`, which a
    // stop or drop would take as valid.
    case 0: return Uint8Array.from({ length: 1 + int(200) }, (_, i) => (i === 0 ? 0x80 + int(128) : int(256)));
    case 1: return pick(["{", "}", "[", "{\"a\":", "nul", "{\"tables\": [\"x\"", "'single'", "{a: 1}", "\u0000"]);
    case 2: return JSON.stringify(pick([[], [1, 2], 42, "str", null, true]));
    case 3: return "[".repeat(5000) + "]".repeat(5000); // deep nesting
    case 4: return JSON.stringify({ tables: ["x"], pad: "p".repeat(70 * 1024) }); // over the size limit
    default: return JSON.stringify({ [`zz_${int(1e6)}`]: anyValue(), ...(random() < 0.5 ? { instance: hostileString() } : {}) }); // an unknown field
  }
}

/** A request shaped like the command's schema, with hostile values (sometimes of the wrong type or out of range). */
function shaped(schema: RequestSchema): string {
  const out: Record<string, unknown> = {};
  for (const [field, spec] of Object.entries(schema)) {
    if (random() > (spec.required ? 0.95 : 0.6)) continue;
    if (random() < 0.1) {
      out[field] = anyValue();
      continue;
    }
    switch (spec.type) {
      case "string": out[field] = field === "mode" && random() < 0.5 ? pick(["always", "replica", "origin", "disable"]) : hostileString(spec.maxLength); break;
      case "string[]": out[field] = Array.from({ length: 1 + int(random() < 0.02 ? 600 : 3) }, () => hostileString(spec.maxLength)); break;
      case "integer": out[field] = pick([spec.min ?? 0, (spec.min ?? 0) - 1, spec.max ?? 2 ** 31, (spec.max ?? 2 ** 31) + 1, int(1000), 2 ** 53 + 2]); break;
      case "boolean": out[field] = random() < 0.5; break;
      case "object": out[field] = Object.fromEntries([[hostileString(), hostileString()]]); break;
    }
  }
  return JSON.stringify(out);
}

interface Endpoint {
  subject: string;
  schema: RequestSchema | undefined;
}

/** Every request schema of the services, by command name (the specs are static; their handlers are never called here). */
function knownSchemas(): Map<string, RequestSchema> {
  const ctx = {} as AdminContext;
  const specs = { ...londisteAdminCommands(ctx), ...adminCommands({} as never, { maxQueues: () => 100 }), compare: compareCommand({} as never), repair: repairCommand({} as never), ping: { request: {} } };
  return new Map(Object.entries(specs).map(([name, spec]) => [name, spec.request]));
}

let job: LondisteJob;
let nc: NatsConnection;
const services: ServiceProcess[] = [];

/** Everything a command could change, on both sides. */
async function snapshot(): Promise<string> {
  const q = async (db: LondisteJob["provider"], sql: string) => JSON.stringify((await db.query(sql)).rows);
  const catalog =
    "select n.nspname, c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and n.nspname !~ '^pg_temp' order by 1, 2";
  return [
    await q(job.provider, catalog),
    await q(job.provider, "select queue_name, queue_ntables, queue_ticker_max_lag::text from pgq.queue order by 1"),
    await q(job.provider, "select co_name from pgq.consumer order by 1"),
    await q(job.provider, "select sub_queue, sub_consumer from pgq.subscription order by 1, 2"),
    await q(job.provider, "select queue_name, table_name from londiste.provider_table order by 1, 2"),
    await q(job.provider, "select * from londiste.provider_seq order by 1, 2"),
    await q(job.provider, "select tgrelid::regclass::text, tgname, tgenabled from pg_trigger where not tgisinternal order by 1, 2"),
    await q(job.provider, "select count(*), sum(id), string_agg(v, ',' order by id) from t"),
    await q(job.subscriber, catalog),
    await q(job.subscriber, "select queue_name, table_name, merge_state, dest_table, skip_truncate from londiste.subscriber_table order by 1, 2"),
    await q(job.subscriber, "select * from londiste.subscriber_seq order by 1, 2"),
    await q(job.subscriber, "select tgrelid::regclass::text, tgname, tgenabled from pg_trigger where not tgisinternal order by 1, 2"),
    await q(job.subscriber, "select count(*), sum(id), string_agg(v, ',' order by id) from t"),
  ].join("\n");
}

beforeAll(async () => {
  job = await createLondisteJob({ label: "fuzz" });
  const replay = job.startReplay();
  services.push(job.ticker, replay);
  await replay.waitForLog("serving admin commands on NATS");
  await job.provider.query("create table t (id int primary key, v text)");
  await job.subscriber.query("create table t (id int primary key, v text)");
  await job.provider.query("insert into t select g, 'v' || g from generate_series(1, 100) g");
  await installJob(job);
  const copy = job.start("fuzz-copy", "copy");
  const repair = job.start("fuzz-repair", "repair-worker");
  services.push(copy, repair);
  expectOk(await job.londiste("provider", "add", "public.t"));
  expectOk(await job.londiste("subscriber", "add", "public.t"));
  await waitForProgress({
    what: "public.t to be copied",
    measure: async () => (await job.subscriber.query("select merge_state from londiste.subscriber_table")).rows[0]?.merge_state as string | undefined,
    done: (s) => s === "ok",
  });
  await repair.waitForLog("serving compare and repair on NATS", { timeoutMs: 60_000 });
  nc = await connectNatsClient(natsUrl());
});

afterAll(async () => {
  await nc?.close();
  await job?.drop();
});

describe("fuzzing every subject of a job's services", () => {
  it(`${MIN_REQUESTS}+ malformed and hostile requests get documented replies; nothing dies; nothing changes`, async () => {
    // The subjects, as any client finds them.
    const schemas = knownSchemas();
    const endpoints: Endpoint[] = [];
    const serviceNames = new Set<string>();
    // Asked again until all four have answered: a busy service may miss one collection window.
    await waitFor(
      async () => {
        const infos = (await requestAll(nc, "$SRV.INFO", "", 2_000)) as Array<{ name: string; endpoints: Array<{ subject: string }> }>;
        for (const info of infos) {
          for (const e of info.endpoints ?? []) {
            if (!e.subject.startsWith(`${job.subjectPrefix}.`)) continue;
            serviceNames.add(info.name);
            if (endpoints.some((x) => x.subject === e.subject)) continue;
            const command = e.subject.split(".").slice(job.subjectPrefix.split(".").length + 2).join(".");
            endpoints.push({ subject: e.subject, schema: schemas.get(command) });
          }
        }
        return serviceNames.size >= 4;
      },
      { timeoutMs: 30_000, what: "$SRV.INFO from the ticker, replay, the copy and the repair worker" },
    );
    expect([...serviceNames].sort()).toEqual(["londiste-copy", "londiste-repair", "londiste-replay", "pgqadm-ticker"]);
    expect(endpoints.length).toBeGreaterThanOrEqual(40);
    // Subjects nobody serves, under the job's prefixes, get no reply at all: sent too, as "no responders".
    endpoints.push({ subject: `${job.subjectPrefix}.londiste.${job.jobName}.no-such-command`, schema: undefined });

    const before = await snapshot();
    const codes = new Map<string, number>();
    const bad: string[] = [];
    let sent = 0;
    let noResponders = 0;
    const started = Date.now();
    const clock = new MachineClock();
    const one = async () => {
      const endpoint = pick(endpoints);
      const actsWithoutNames = ACTS_WITHOUT_NAMES.test(endpoint.subject) || endpoint.schema === undefined;
      const payload = actsWithoutNames || random() < 0.5 ? malformed() : shaped(endpoint.schema!);
      sent++;
      let text: string;
      try {
        text = (await nc.request(endpoint.subject, payload, { timeout: 30_000 })).string();
      } catch (error) {
        if (endpoint.subject.endsWith(".no-such-command") && /no responders/i.test(String(error))) {
          noResponders++;
          return;
        }
        bad.push(`${endpoint.subject} ${String(payload).slice(0, 100)}: ${String(error)}`);
        return;
      }
      let reply: { result?: unknown; error?: { code?: unknown; message?: unknown } };
      try {
        reply = JSON.parse(text) as typeof reply;
      } catch {
        bad.push(`${endpoint.subject}: reply is not JSON: ${text.slice(0, 200)}`);
        return;
      }
      const error = reply.error;
      const ok = "result" in reply ? error === undefined : typeof error?.code === "string" && DOCUMENTED_CODES.has(error.code) && typeof error.message === "string" && error.message.length > 0;
      if (!ok) bad.push(`${endpoint.subject} ${String(payload).slice(0, 100)} → ${text.slice(0, 200)}`);
      const code = error === undefined ? "result" : String(error.code);
      codes.set(code, (codes.get(code) ?? 0) + 1);
      if (code === "internal") bad.push(`internal: ${endpoint.subject} ${String(payload).slice(0, 100)} → ${text.slice(0, 300)}`);
    };
    const worker = async () => {
      while (sent < MIN_REQUESTS && Date.now() - started < TIME_BOUND_MS && bad.length < 20) await one();
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
    const wallMs = Date.now() - started;
    console.log(`[fuzz] ${sent} requests in ${(wallMs / 1000).toFixed(1)} s wall (${(clock.elapsed() / 1000).toFixed(1)} s machine), replies by code: ${JSON.stringify(Object.fromEntries(codes))}, no responders: ${noResponders}`);

    expect(bad.slice(0, 10)).toEqual([]);
    expect(sent).toBeGreaterThanOrEqual(MIN_REQUESTS);
    // Malformed and hostile requests were answered as such, and some reached the handlers.
    expect(codes.get("bad_request") ?? 0).toBeGreaterThan(MIN_REQUESTS / 3);
    expect((codes.get("result") ?? 0) + (codes.get("not_found") ?? 0)).toBeGreaterThan(100);

    // No service died, each still answers, and replication goes on.
    for (const p of services) expect(p.running, `${p.label}: ${p.tail()}`).toBe(true);
    expect(expectOk(await job.londiste("status"))).toContain("public.t");
    await job.provider.query("insert into t values (1001, 'after the fuzz')");
    await waitFor(async () => (await job.subscriber.query("select 1 from t where id = 1001")).rows.length === 1, { timeoutMs: 60_000, what: "row 1001" });
    await job.provider.query("delete from t where id = 1001");
    await waitFor(async () => (await job.subscriber.query("select 1 from t where id = 1001")).rows.length === 0, { timeoutMs: 60_000, what: "row 1001 gone" });
    expect(await snapshot()).toBe(before);
  });
});
