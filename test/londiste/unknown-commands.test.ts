/**
 * The catch-all for unknown commands under a job's prefix, on a private
 * NATS server (so no other test's services answer $SRV.PING): an unknown
 * subject gets `unknown_command`; a known command of a service that does
 * not run still gets "no responders" (also when no instance of that
 * service exists for any job), and once it runs, its own reply; the
 * service's own commands and JetStream publishes under the prefix are
 * left alone.
 */
import { Writable } from "node:stream";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { errors, type NatsConnection } from "@nats-io/nats-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serviceRuns, startCommandService } from "../../shared/bus/command-service.ts";
import { londisteUnknownCommands } from "../../shared/config/londiste.ts";
import { createLogger } from "../../shared/log.ts";
import { VERSION } from "../../shared/version.ts";
import { freePort } from "../support/local-postgres.ts";
import { connectNatsClient, rawRequest, startNatsServer } from "../support/nats.ts";
import { makeTempDir, useProcessCleanup } from "../support/processes.ts";

useProcessCleanup();

const JOB = "j1";
const PREFIX = `test.unknown.londiste.${JOB}`;
let nc: NatsConnection;

beforeAll(async () => {
  const port = await freePort();
  await startNatsServer(port, makeTempDir("unknown-nats"), "nats-unknown");
  nc = await connectNatsClient(`nats://127.0.0.1:${port}`);
}, 60_000);

afterAll(async () => {
  await nc?.close();
});

const log = createLogger({ service: "test", job: JOB, pretty: false, destination: new Writable({ write: (_c, _e, done) => done() }) });

const isNoResponders = (error: unknown) =>
  error instanceof errors.NoRespondersError || (error instanceof errors.RequestError && error.cause instanceof errors.NoRespondersError);

describe("requests under a job's prefix", () => {
  it("unknown_command for unknown subjects; no responders for a command whose service does not run; its reply once it does", async () => {
    const replay = await startCommandService(nc, {
      name: "londiste-replay",
      version: VERSION,
      description: "test replay",
      subjectPrefix: PREFIX,
      commands: { status: { description: "status", request: {}, handler: async () => ({ job: JOB }) } },
      metadata: { job: JOB },
      queue: `londiste-${JOB}`,
      log,
      unknownCommands: { ...londisteUnknownCommands(JOB), ownerRuns: () => serviceRuns(nc, "londiste-repair", { job: JOB }) },
    });
    try {
      expect(await serviceRuns(nc, "londiste-repair", { job: JOB })).toBe(false);
      expect(await rawRequest(nc, `${PREFIX}.status`, "{}")).toEqual({ result: { job: JOB } });
      expect(await rawRequest(nc, `${PREFIX}.stauts`, "{}")).toEqual({
        error: { code: "unknown_command", message: expect.stringContaining(`no command "stauts" on ${PREFIX}; the commands: `) },
      });
      expect(await rawRequest(nc, `${PREFIX}.subscriber.ad`, "{}")).toMatchObject({ error: { code: "unknown_command" } });
      // No repair worker at all: the same no-responders status NATS sends, soon.
      const started = performance.now();
      const compare = await rawRequest(nc, `${PREFIX}.compare`, "{}", 30_000).then(
        () => "answered",
        (error: unknown) => (isNoResponders(error) ? "no responders" : String(error)),
      );
      expect(compare).toBe("no responders");
      expect(performance.now() - started).toBeLessThan(15_000);

      // A JetStream publish under the prefix gets the stream's ack, not an error reply.
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: "UNKNOWN_TEST", subjects: [`${PREFIX}.events.>`] });
      const ack = await jetstream(nc).publish(`${PREFIX}.events.public_t`, "{}");
      expect(ack.stream).toBe("UNKNOWN_TEST");

      // A repair worker of another job does not count; one of this job answers compare itself.
      const other = await startRepair("other");
      expect(await serviceRuns(nc, "londiste-repair", { job: JOB })).toBe(false);
      await other.stop();
      const repair = await startRepair(JOB);
      try {
        expect(await serviceRuns(nc, "londiste-repair", { job: JOB })).toBe(true);
        for (let i = 0; i < 5; i++) expect(await rawRequest(nc, `${PREFIX}.compare`, "{}")).toEqual({ result: "compared" });
      } finally {
        await repair.stop();
      }
    } finally {
      await replay.stop();
    }
  });
});

function startRepair(job: string) {
  return startCommandService(nc, {
    name: "londiste-repair",
    version: VERSION,
    description: "test repair worker",
    subjectPrefix: PREFIX,
    commands: { compare: { description: "compare", request: {}, handler: async () => "compared" } },
    metadata: { job },
    queue: `londiste-${job}-repair`,
    log,
    unknownCommands: "none",
  });
}
