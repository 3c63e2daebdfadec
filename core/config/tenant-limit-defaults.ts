import { z } from "zod";
import type { TenantLimits } from "../contracts/tenant-limits.ts";
import { intFrom, parseEnv } from "./parse-env.ts";

/**
 * The operator's default quotas, for every tenant without an override. Chosen so `npm start`, the
 * test suite and the benchmark (which queues ~100k jobs on one endpoint) never reach them.
 */
const schema = z.object({
  HEARTH_DEFAULT_MAX_ENDPOINTS: intFrom(100, 0, 1_000_000),
  HEARTH_DEFAULT_MAX_WORKERS: intFrom(100, 0, 1_000_000),
  HEARTH_DEFAULT_MAX_WORKERS_MIN: intFrom(20, 0, 1_000_000),
  HEARTH_DEFAULT_MAX_QUEUED_JOBS_PER_ENDPOINT: intFrom(1_000_000, 0, 1_000_000_000),
  // RunPod's own body limit on /runsync: by default the operation's limit (10 MB /run, 20 MB /runsync) is the one that binds.
  HEARTH_DEFAULT_MAX_INPUT_BYTES: intFrom(20 * 1024 * 1024, 0, 1 << 30),
  // $100 an hour: well above a few GPUs (RunPod's H100 flex rate is about $4.2/h), low enough to stop a runaway fleet.
  HEARTH_DEFAULT_SPEND_PER_HOUR_MICROS: intFrom(100_000_000, 0, 1_000_000_000_000_000),
});

export function loadLimitDefaults(env: NodeJS.ProcessEnv = process.env): TenantLimits {
  const c = parseEnv(schema, env, "tenant limit defaults");
  return {
    maxEndpoints: c.HEARTH_DEFAULT_MAX_ENDPOINTS,
    maxWorkers: c.HEARTH_DEFAULT_MAX_WORKERS,
    maxWorkersMin: c.HEARTH_DEFAULT_MAX_WORKERS_MIN,
    maxQueuedJobsPerEndpoint: c.HEARTH_DEFAULT_MAX_QUEUED_JOBS_PER_ENDPOINT,
    maxInputBytes: c.HEARTH_DEFAULT_MAX_INPUT_BYTES,
    spendPerHourMicros: c.HEARTH_DEFAULT_SPEND_PER_HOUR_MICROS,
  };
}
