import { z } from "zod";
import { defaultRatePreset, type DefaultRatePreset } from "../contracts/rate-limits.ts";
import { intFrom, parseEnv } from "./parse-env.ts";

export interface AdmissionDefaults {
  /** HEARTH_DEFAULT_RATE_LIMITS: `runpod` gives tenants without rates of their own RunPod's per-route table; `none` (default) leaves them unlimited. */
  ratePreset: DefaultRatePreset;
  /**
   * HEARTH_QUEUE_CAPACITY_MULTIPLE: an endpoint's queue may hold this many times its capacity
   * (workersMax × per-worker concurrency) before new jobs get 429; 0 (default) turns the bound off
   * and leaves only the tenant's maxQueuedJobsPerEndpoint.
   */
  queueCapacityMultiple: number;
  /** HEARTH_QUEUE_CAPACITY_FLOOR: the bound is never below this many jobs (default 50, RunPod's). */
  queueCapacityFloor: number;
}

const schema = z.object({
  HEARTH_DEFAULT_RATE_LIMITS: z.preprocess((v) => (v === "" || v === undefined ? "none" : v), defaultRatePreset),
  HEARTH_QUEUE_CAPACITY_MULTIPLE: intFrom(0, 0, 1_000_000),
  HEARTH_QUEUE_CAPACITY_FLOOR: intFrom(50, 0, 1_000_000_000),
});

export function loadAdmissionDefaults(env: NodeJS.ProcessEnv = process.env): AdmissionDefaults {
  const c = parseEnv(schema, env, "admission defaults");
  return { ratePreset: c.HEARTH_DEFAULT_RATE_LIMITS, queueCapacityMultiple: c.HEARTH_QUEUE_CAPACITY_MULTIPLE, queueCapacityFloor: c.HEARTH_QUEUE_CAPACITY_FLOOR };
}
