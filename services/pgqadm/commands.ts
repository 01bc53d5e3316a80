/**
 * pgqadm's command words and how each becomes a request to the ticker
 * service. Pure: argument checking only, no I/O.
 */
import { UsageError } from "../../shared/cli/args.ts";

export { UsageError };

export interface CommandLine {
  /** Subject suffix (the service's command name). */
  command: string;
  request: Record<string, unknown>;
}

interface Usage {
  args: string;
  help: string;
  build: (args: string[]) => Record<string, unknown>;
  min: number;
  max: number;
}

function integer(name: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${name} must be a whole number, got "${value}"`);
  return Number(value);
}


export const PGQADM_COMMANDS: Record<string, Usage> = {
  install: { args: "", help: "install or upgrade PgQ in the database (needs no running ticker)", min: 0, max: 0, build: () => ({}) },
  create: { args: "QUEUE", help: "create a queue", min: 1, max: 1, build: ([q]) => ({ queue: q }) },
  drop: { args: "QUEUE", help: "drop a queue", min: 1, max: 1, build: ([q]) => ({ queue: q }) },
  register: { args: "QUEUE CONSUMER", help: "register a consumer", min: 2, max: 2, build: ([q, c]) => ({ queue: q, consumer: c }) },
  unregister: { args: "QUEUE CONSUMER", help: "unregister a consumer", min: 2, max: 2, build: ([q, c]) => ({ queue: q, consumer: c }) },
  config: {
    args: "QUEUE [KEY=VALUE ...]",
    help: "show or change queue settings (ticker_max_count, ticker_max_lag, ticker_idle_period, rotation_period, ticker_paused, external_ticker)",
    min: 1,
    max: 20,
    build: ([q, ...pairs]) => {
      const settings: Record<string, string> = {};
      for (const pair of pairs) {
        const eq = pair.indexOf("=");
        if (eq <= 0) throw new UsageError(`expected KEY=VALUE, got "${pair}"`);
        settings[pair.slice(0, eq)] = pair.slice(eq + 1);
      }
      return pairs.length > 0 ? { queue: q, settings } : { queue: q };
    },
  },
  status: { args: "", help: "versions, queues, consumers", min: 0, max: 0, build: () => ({}) },
  "queue-rename": { args: "OLD NEW", help: "rename a queue", min: 2, max: 2, build: ([o, n]) => ({ old: o, new: n }) },
  "show-batch-events": {
    args: "BATCH",
    help: "list the events of an open batch",
    min: 1,
    max: 1,
    build: ([b]) => ({ batch: integer("BATCH", b!) }),
  },
  "del-event": {
    args: "QUEUE CONSUMER EVENT",
    help: "delete an event from a consumer's retry or failed queue",
    min: 3,
    max: 3,
    build: ([q, c, e]) => ({ queue: q, consumer: c, event: integer("EVENT", e!) }),
  },
  "reg-copy": {
    args: "QUEUE FROM TO",
    help: "register consumer TO at the position of FROM",
    min: 3,
    max: 3,
    build: ([q, f, t]) => ({ queue: q, from: f, to: t }),
  },
  "reg-move": {
    args: "QUEUE FROM TO",
    help: "reg-copy, then unregister FROM, in one transaction",
    min: 3,
    max: 3,
    build: ([q, f, t]) => ({ queue: q, from: f, to: t }),
  },
  ping: { args: "", help: "show a running ticker instance and its state", min: 0, max: 0, build: () => ({}) },
  stop: {
    args: "[INSTANCE]",
    help: "stop the job's tickers (or one instance) after their current unit of work (replaces pgqadm -s/-k)",
    min: 0,
    max: 1,
    build: ([i]) => (i ? { instance: i } : {}),
  },
  reload: {
    args: "[INSTANCE]",
    help: "make the job's tickers (or one instance) re-read their config (replaces pgqadm -r)",
    min: 0,
    max: 1,
    build: ([i]) => (i ? { instance: i } : {}),
  },
};

export function parseCommand(words: string[]): CommandLine {
  const [command, ...args] = words;
  if (!command) throw new UsageError("no command given");
  const usage = PGQADM_COMMANDS[command];
  if (!usage) throw new UsageError(`unknown command "${command}" (known: ticker, ${Object.keys(PGQADM_COMMANDS).join(", ")})`);
  if (args.length < usage.min || args.length > usage.max) {
    throw new UsageError(`usage: pgqadm CONFIG ${command} ${usage.args}`.trimEnd());
  }
  return { command, request: usage.build(args) };
}

export function helpText(): string {
  const lines = [
    "usage: pgqadm [--json] [--timeout SECONDS] CONFIG COMMAND [ARGS]",
    "       pgqadm --sql-dir      print the folder of the SQL files: psql -f \"$(pgqadm --sql-dir)/pgq/install.sql\"",
    "",
    "commands:",
  ];
  lines.push(`  ${"ticker".padEnd(36)} run the ticker service (long-running)`);
  lines.push(`  ${"logs [--service S] [--since TIME]".padEnd(36)} the services' log records in log_db (read there, not over NATS);`);
  lines.push(`  ${"     [--level LEVEL] [--limit N]".padEnd(36)} --since 2026-11-27T10:00Z or an age (30m, 2h, 1d), --level warn: warn and above`);
  for (const [name, u] of Object.entries(PGQADM_COMMANDS)) lines.push(`  ${`${name} ${u.args}`.padEnd(36)} ${u.help}`);
  return lines.join("\n");
}
