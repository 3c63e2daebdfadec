import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["core/**/*.test.ts", "apps/**/*.test.ts", "worker/**/*.test.ts", "scheduler/**/*.test.ts", "test/**/*.test.ts", "bench/**/*.test.ts"],
    // Files share one Redis and one Postgres server and spawn worker processes on a 2-core machine: one file at a time.
    fileParallelism: false,
    // The build first (dist/: the worker and the embedded engine as users run them), then the run's id and sweep.
    globalSetup: ["test/support/build-dist.ts", "test/support/global-teardown.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
