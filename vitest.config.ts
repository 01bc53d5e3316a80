import { defineConfig } from "vitest/config";

/**
 * Every test: needs PostgreSQL and NATS (the global setup finds or starts them). The unit
 * tier (`*.unit.test.ts`, no servers) has its own config, vitest.unit.config.ts, and runs
 * here too.
 */
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Last resorts only: the waits inside the tests go by progress and fail first, with a message
    // (test/support/wait.ts); these only stop a test that hangs, also on a loaded machine.
    testTimeout: 240_000,
    hookTimeout: 240_000,
    sequence: {
      // Hooks in the order they are registered, after-hooks too: useProcessCleanup() at the top of a
      // file kills the file's processes before the file's own afterAll drops its databases, so a drop
      // that hangs cannot keep a process alive.
      hooks: "list",
    },
    // Each file has its own databases, so files may run in parallel; two workers match the 2-core CI box.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
