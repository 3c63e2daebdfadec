import type { RedisKeys } from "../../core/queue/keys.ts";
import { ExternalGuardClient } from "../../core/guardrails/external-guard.ts";
import { logGuardrailTriggers } from "../../core/guardrails/guardrail-log.ts";
import { egressPolicy } from "../../core/config/egress.ts";
import { EMPTY_ALLOW_LIST } from "../../core/net/url-policy.ts";
import type { OutputGuardDeps } from "./output-guard.ts";
import type { RuntimeMetrics } from "./runtime-metrics.ts";
import type { WorkerRuntimeOptions } from "./worker-runtime-options.ts";

/** The runtime's options the guardrails read: its Redis, endpoint and egress policy (`guardEgress`, default https:// to public addresses only). */
export type WorkerGuardrailsOptions = Pick<WorkerRuntimeOptions, "redis" | "endpointId" | "guardEgress"> & {
  keys: RedisKeys;
  /** The worker's metrics, read at each trigger: they may be attached after the runtime is made. */
  metrics: () => RuntimeMetrics | undefined;
};

/** What the job processor's output guardrails use on a worker: its external guard client, and where triggers are counted and logged. */
export function workerGuardrails(options: WorkerGuardrailsOptions): OutputGuardDeps {
  return {
    external: new ExternalGuardClient({ policy: options.guardEgress ?? egressPolicy(false, EMPTY_ALLOW_LIST) }),
    record: async (jobId, triggers, guardRule) => {
      for (const t of triggers) options.metrics()?.guardrailTriggered(options.endpointId, t);
      await logGuardrailTriggers(options.redis, options.keys, options.endpointId, triggers, { by: "worker", jobId, ...(guardRule !== undefined && { guardRule }) });
    },
  };
}
