import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["core/**/*.test.ts", "apps/**/*.test.ts", "worker/**/*.test.ts", "scheduler/**/*.test.ts", "test/**/*.test.ts"],
    // Files share one Redis and one Postgres server and spawn worker processes on a 2-core machine: one file at a time.
    fileParallelism: false,
    globalSetup: ["test/support/global-teardown.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
