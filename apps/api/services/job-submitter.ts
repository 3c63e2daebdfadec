import type { Redis } from "ioredis";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { DEFAULT_TTL_MS, type RunRequest } from "../../../core/contracts/job-request.ts";
import { JOB_NAME, LOW_PRIORITY, type JobData } from "../../../core/queue/job-catalog.ts";
import type { JobRecordBuffer } from "../../../core/db/job-records.ts";
import { newJobId } from "../../../core/ids/random-id.ts";
import type { EndpointQueues } from "./endpoint-queues.ts";

/** How long a finished result stays readable (RunPod: 30 min for /run; 1 min for /runsync, up to 5 min with `wait`). */
export const ASYNC_RETENTION_MS = 30 * 60_000;
export function syncRetentionMs(waitMs: number): number {
  return Math.min(5 * 60_000, Math.max(60_000, waitMs));
}

export interface JobSubmitterOptions {
  queues: EndpointQueues;
  redis: Redis;
  records: JobRecordBuffer;
  /**
   * Minimum ms between two scheduler wakes for one endpoint from this process. Default 1000, the
   * scheduler's own tick: a wake exists for the first job on a cold endpoint; under steady traffic
   * every wake would make the scheduler re-read the endpoint for nothing.
   */
  wakeIntervalMs?: number;
  now?: () => number;
}

export interface Submitted {
  id: string;
  data: JobData;
}

/**
 * The hot path: one `Queue.add` per job. The durable record is buffered for a batched write and
 * the scheduler is woken without awaiting either.
 */
export class JobSubmitter {
  private readonly lastWake = new Map<string, number>();
  private readonly wakeIntervalMs: number;
  private readonly now: () => number;

  constructor(private readonly options: JobSubmitterOptions) {
    this.wakeIntervalMs = options.wakeIntervalMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  async submit(endpoint: Endpoint, tenantId: string, req: RunRequest, mode: { sync: boolean; retentionMs: number; id?: string }): Promise<Submitted> {
    const now = this.now();
    const id = mode.id ?? newJobId(mode.sync);
    const lowPriority = req.policy?.lowPriority ?? false;
    const data: JobData = {
      endpointId: endpoint.id,
      tenantId,
      input: req.input,
      executionTimeoutMs: req.policy?.executionTimeout ?? endpoint.executionTimeoutMs,
      lowPriority,
      submittedAt: now,
      expiresAt: now + (req.policy?.ttl ?? DEFAULT_TTL_MS),
      retentionMs: mode.retentionMs,
      retries: 0,
    };
    if (req.webhook) data.webhook = req.webhook;
    if (req.webhookV2) data.webhookV2 = req.webhookV2;
    if (req.s3Config) data.s3Config = req.s3Config;

    const keepSeconds = Math.ceil(mode.retentionMs / 1000);
    await this.options.queues.queue(endpoint.id).add(JOB_NAME, data, {
      jobId: id,
      ...(lowPriority ? { priority: LOW_PRIORITY } : {}),
      removeOnComplete: { age: keepSeconds },
      removeOnFail: { age: keepSeconds },
    });

    this.options.records.push({
      id,
      tenantId,
      endpointId: endpoint.id,
      status: "IN_QUEUE",
      statusAt: now,
      sync: mode.sync,
      lowPriority,
      webhook: req.webhook ?? null,
      submittedAt: new Date(now),
    });
    if (!lowPriority) this.wake(endpoint.id);
    return { id, data };
  }

  /**
   * Tells the scheduler an endpoint has demand (the activator), at most once per `wakeIntervalMs`;
   * `force` (a changed endpoint) always wakes it.
   */
  wake(endpointId: string, options: { force?: boolean } = {}): void {
    const now = this.now();
    if (!options.force && now - (this.lastWake.get(endpointId) ?? 0) < this.wakeIntervalMs) return;
    this.lastWake.set(endpointId, now);
    const keys = this.options.queues.keys;
    this.options.redis.publish(keys.wakeChannel(), JSON.stringify({ endpointId })).catch(() => {
      // The scheduler's tick converges anyway; a lost wake only costs latency.
    });
  }
}
