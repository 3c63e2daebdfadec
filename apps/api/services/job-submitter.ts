import { formatTraceparent, type TraceParent } from "../../../core/trace/trace-context.ts";
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { outputPart } from "../../../core/contracts/guardrails.ts";
import { DEFAULT_TTL_MS, type RunRequest } from "../../../core/contracts/job-request.ts";
import { LOW_PRIORITY, type JobData } from "../../../core/queue/job-catalog.ts";
import type { AcceptedPayload } from "../../../core/log/log-entry.ts";
import { newJobId } from "../../../core/ids/random-id.ts";
import type { EndpointQueues } from "./endpoint-queues.ts";
import type { SecretBox } from "../../../core/secrets/secret-box.ts";
import { sealS3Config } from "../../../core/secrets/job-secrets.ts";
import { inputRefUri } from "./submission-checks.ts";

/** How long an `Idempotency-Key` keeps answering with the job it first created. */
export const IDEMPOTENCY_TTL_SECONDS = 24 * 3600;

export interface JobSubmitterOptions {
  queues: EndpointQueues;
  redis: Redis;
  /**
   * Minimum ms between two scheduler wakes for one endpoint from this process. Default 1000, the
   * scheduler's own tick: a wake exists for the first job on a cold endpoint; under steady traffic
   * every wake would make the scheduler re-read the endpoint for nothing.
   */
  wakeIntervalMs?: number;
  /** Seals a request's `s3Config` into the job (the route refuses one when there is no box). */
  secrets?: SecretBox;
  /** HEARTH_OFFLOAD_BYTES, and whether the platform has a bucket (HEARTH_OUTPUT_BUCKET) for jobs without `s3Config`. */
  offload?: { bytes: number; platformBucket: boolean };
  now?: () => number;
}

export interface SubmitMode {
  sync: boolean;
  retentionMs: number;
  id?: string;
  /** The caller's `Idempotency-Key` header, if any. */
  idempotencyKey?: string;
  /** Who submitted it and from where, carried by the acceptance record into the audit log. */
  origin?: JobOrigin;
}

export interface JobOrigin {
  keyId: string;
  sourceAddress: string | null;
  /** The submitting request's span (apps/api/middleware/request-context.ts): the job carries it to the worker. */
  trace?: TraceParent;
}

export interface Submitted {
  id: string;
  data: JobData;
  /** True when an earlier submission with the same Idempotency-Key created this job: nothing was queued now. */
  repeated?: boolean;
}

/**
 * The hot path: one BullMQ add per job, whose script also logs its acceptance (the durable record
 * is projected from that entry, off this path), and a scheduler wake that is not awaited.
 */
export class JobSubmitter {
  private readonly lastWake = new Map<string, number>();
  private readonly wakeIntervalMs: number;
  private readonly now: () => number;

  constructor(private readonly options: JobSubmitterOptions) {
    this.wakeIntervalMs = options.wakeIntervalMs ?? 1000;
    this.now = options.now ?? Date.now;
  }

  async submit(endpoint: Endpoint, tenantId: string, req: RunRequest, mode: SubmitMode): Promise<Submitted> {
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
    const guardrails = outputPart(endpoint.guardrails);
    if (guardrails) data.guardrails = guardrails;
    if (mode.origin?.trace) data.traceparent = formatTraceparent(mode.origin.trace);
    if (req.webhook) data.webhook = req.webhook;
    if (req.webhookV2) data.webhookV2 = req.webhookV2;
    if (req.s3Config) {
      // The route checked there is a box; a request reaching here without one is a bug, not the caller's.
      if (!this.options.secrets) throw new Error("s3Config reached the submitter without HEARTH_SECRETS_KEY");
      data.s3ConfigSealed = sealS3Config(this.options.secrets, id, req.s3Config);
    }
    const offload = this.options.offload;
    if (offload && (req.s3Config || offload.platformBucket)) data.offloadBytes = offload.bytes;
    const inputRef = inputRefUri(req.input);
    if (inputRef !== undefined) data.inputRef = inputRef;

    let idemKey: string | undefined;
    let idemHash: string | undefined;
    if (mode.idempotencyKey !== undefined) {
      idemHash = createHash("sha256").update(mode.idempotencyKey).digest("hex").slice(0, 32);
      idemKey = this.options.queues.keys.idempotency(endpoint.id, tenantId, idemHash);
      // Claim the key for this job id; an earlier claim wins and its job is the answer.
      const earlier = await this.options.redis.set(idemKey, id, "EX", IDEMPOTENCY_TTL_SECONDS, "NX", "GET");
      if (earlier !== null) return { id: earlier, data, repeated: true };
    }

    const accepted: AcceptedPayload = {
      jobId: id,
      tenantId,
      sync: mode.sync,
      lowPriority,
      retries: 0,
      submittedAt: now,
      executionTimeoutMs: data.executionTimeoutMs,
      ...(req.webhook !== undefined && { webhook: req.webhook }),
      ...(req.webhookV2 !== undefined && { webhookV2: req.webhookV2 }),
      ...(idemHash !== undefined && { idempotencyKey: idemHash }),
      ...(mode.origin !== undefined && { keyId: mode.origin.keyId }),
      ...(mode.origin?.sourceAddress != null && { source: mode.origin.sourceAddress }),
      epRev: Date.parse(endpoint.updatedAt),
      ...(mode.origin?.trace && { traceId: mode.origin.trace.traceId }),
    };
    const keepSeconds = Math.ceil(mode.retentionMs / 1000);
    try {
      await this.options.queues.add(
        endpoint.id,
        id,
        data,
        { ...(lowPriority ? { priority: LOW_PRIORITY } : {}), removeOnComplete: { age: keepSeconds }, removeOnFail: { age: keepSeconds } },
        accepted,
      );
    } catch (err) {
      // Nothing was queued: the key must not point at a job that does not exist.
      if (idemKey) await this.options.redis.del(idemKey).catch(() => {});
      throw err;
    }
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
    // Entries older than the interval decide nothing: drop them all when the map grows, so
    // endpoints touched once do not stay in memory for the life of the process.
    if (this.lastWake.size >= 10_000) for (const [id, at] of this.lastWake) if (now - at >= this.wakeIntervalMs) this.lastWake.delete(id);
    this.lastWake.set(endpointId, now);
    const keys = this.options.queues.keys;
    this.options.redis.publish(keys.wakeChannel(), JSON.stringify({ endpointId })).catch(() => {
      // The scheduler's tick converges anyway; a lost wake only costs latency.
    });
  }
}
