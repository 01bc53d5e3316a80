import { defineConfig } from "vitest/config";

/**
 * The unit tier (`npm run test:unit`): files named `*.unit.test.ts`, which need no PostgreSQL
 * and no NATS, so there is no global setup looking for servers. They also run in `npm test`.
 */
export default defineConfig({
  test: {
    include: ["test/**/*.unit.test.ts"],
    testTimeout: 30_000,
    maxWorkers: 2,
  },
});
