import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each file has its own databases, so files may run in parallel; two workers match the 2-core CI box.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
