import type { z } from "zod";
import { RUNPOD_RATE_TABLE, ROUTE_CLASSES } from "../../../../core/contracts/rate-limits.ts";
import { quotaExceeded } from "../../services/tenant-policy.ts";
import { fieldError, insufficientScope } from "../route-kit.ts";
import type { endpointView, keyView, limitsOverview } from "../management-routes.ts";
import { API_KEY, AT, ENDPOINT_ID, KEY_ID, MODEL_NAME, TENANT_ID, WEBHOOK_SECRET } from "./example-ids.ts";

/*
 * Examples of the tenant's management routes (`/api/v1/endpoints`, `/keys`, `/limits`): one vLLM
 * endpoint as the API shows it (secret values as `{"secret": true}`), its keys and quotas.
 */

type EndpointView = z.input<typeof endpointView>;

export const endpointExample: EndpointView = {
  id: ENDPOINT_ID,
  tenantId: TENANT_ID,
  name: "qwen-chat",
  engine: {
    kind: "openai",
    profile: "vllm",
    model: "s3://hearth-models/Qwen2.5-7B-Instruct/",
    args: { "max-model-len": 8192, "gpu-memory-utilization": 0.9 },
    servedModelName: MODEL_NAME,
    concurrency: 8,
    startupTimeoutMs: 600_000,
    env: { HF_HUB_OFFLINE: "1", HF_TOKEN: { secret: true } },
  },
  gpuTypeIds: ["NVIDIA L4"],
  workersMin: 0,
  workersMax: 3,
  idleTimeout: 300,
  scalerType: "QUEUE_DELAY",
  scalerValue: 4,
  executionTimeoutMs: 600_000,
  flashboot: true,
  maxFailedStarts: 3,
  workersStandby: 0,
  guardrails: { input: { pii: "redact", injection: "flag" } },
  createdAt: AT.endpointCreated,
  updatedAt: AT.endpointUpdated,
};

/** As created: never changed yet, and its webhook secret shown this once. */
export const createdEndpoint: EndpointView & { webhookSecret: string } = { ...endpointExample, updatedAt: AT.endpointCreated, webhookSecret: WEBHOOK_SECRET };

/** `GET /endpoints/{id}` of an endpoint whose workers kept failing to start: its breaker open, jobs failing. */
export const endpointDetail: EndpointView = {
  ...endpointExample,
  waitReason: "crash_loop",
  startBreaker: { open: true, failedStarts: 3, lastError: "worker exited with code 1 before it was ready", openedAt: "2025-06-04T14:24:51.207Z" },
};

/** After `/reset`: the breaker closed. */
export const resetEndpoint: EndpointView = { ...endpointExample, startBreaker: { open: false, failedStarts: 0, lastError: null, openedAt: null } };

export const keyExample: z.input<typeof keyView> = {
  id: KEY_ID,
  name: "ci-runner",
  prefix: API_KEY.slice(0, 10),
  scope: "run",
  rateLimits: { requestsPerSecond: 20, burst: 40 },
  createdAt: "2025-06-02T09:20:11.306Z",
  revokedAt: null,
};

export const createdKey: z.input<typeof keyView> & { key: string } = { ...keyExample, key: API_KEY };

export const limitsExample: z.input<typeof limitsOverview> = {
  limits: { maxEndpoints: 100, maxWorkers: 100, maxWorkersMin: 20, maxQueuedJobsPerEndpoint: 1_000_000, maxInputBytes: 20 * 1024 * 1024, spendPerHourMicros: 100_000_000 },
  rates: { source: "runpod", routes: Object.fromEntries(ROUTE_CLASSES.map((rc) => [rc, RUNPOD_RATE_TABLE[rc]])) as typeof RUNPOD_RATE_TABLE, key: keyExample.rateLimits ?? {} },
  usage: { endpoints: 2, workersMin: 1 },
  grants: { remoteCode: false },
};

export const managementErrors = {
  quota: quotaExceeded("maxEndpoints", 100, "the tenant has 100 endpoints"),
  workersMin: fieldError("workersMin", "must not exceed workersMax"),
  keyScope: insufficientScope("run", "POST", "/api/v1/keys"),
};
