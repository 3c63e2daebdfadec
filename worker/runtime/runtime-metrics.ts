import type { JobResult } from "../../core/queue/job-catalog.ts";
import type { GuardrailCounter } from "../../core/guardrails/guardrail-log.ts";

/**
 * What the runtime reports for the worker's `/metrics` (worker/metrics/worker-metrics.ts implements
 * it). An interface, so the runtime never loads prom-client: a worker without metrics does not pay
 * for it on its cold start.
 */
export interface RuntimeMetrics extends GuardrailCounter {
  /** A job finished here (not handed back), with the result the worker reports. */
  jobFinished(result: JobResult): void;
  /** Jobs in flight now. */
  jobsRunning(n: number): void;
  /** The engine's health, at start and at each check. */
  engineHealth(healthy: boolean): void;
  /** The engine process was lost (the supervisor restarts it). */
  engineLost(): void;
}
