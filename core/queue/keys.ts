/**
 * Every Redis name Hearth uses, in one place. All share the prefix (a Redis Cluster hash tag by
 * default) so BullMQ's multi-key scripts and ours stay in one slot.
 *
 * Everything a worker touches lives under its endpoint's BullMQ queue prefix,
 * `<prefix>:ep.<endpoint>:`: BullMQ's own keys (`wait`, `active`, `events`, job hashes…) and
 * Hearth's (below, after `x:`, which no BullMQ key or job id uses). A worker's Redis user can
 * then be scoped to the key pattern `<prefix>:ep.<endpoint>:*` and the channel pattern of the same
 * shape (`endpointKeyPattern`). Job ids never contain `:`, so `x:…` never names a job.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** BullMQ queue name of an endpoint (BullMQ forbids ':' in queue names). */
  queueName(endpointId: string): string {
    return `ep.${endpointId}`;
  }
  /** The key prefix BullMQ gives every key of the endpoint's queue. */
  queuePrefix(endpointId: string): string {
    return `${this.prefix}:${this.queueName(endpointId)}`;
  }
  /** Every key and channel of one endpoint matches this glob (for a Redis ACL). */
  endpointKeyPattern(endpointId: string): string {
    return `${this.queuePrefix(endpointId)}:*`;
  }
  /**
   * The endpoint's durable event log: BullMQ's own events stream of the queue, which its scripts
   * append to atomically with each job transition, plus Hearth's entries (see core/log).
   */
  log(endpointId: string): string {
    return `${this.queuePrefix(endpointId)}:events`;
  }
  /** BullMQ's meta hash of the queue (holds the events stream's length cap). */
  queueMeta(endpointId: string): string {
    return `${this.queuePrefix(endpointId)}:meta`;
  }
  /** BullMQ's lock of a job being processed (its value is the holding worker's token). */
  jobLock(endpointId: string, jobId: string): string {
    return `${this.queuePrefix(endpointId)}:${jobId}:lock`;
  }
  /** BullMQ's hash of one job (fields `data`, `processedOn`, …). */
  job(endpointId: string, jobId: string): string {
    return `${this.queuePrefix(endpointId)}:${jobId}`;
  }
  /**
   * A rate or token bucket (core/redis/rate-limit-scripts.ts) of a tenant (`t`) or an API key (`k`);
   * `name` says which (`req`, `req.run`, `tok`…). Expires once full again.
   */
  rateBucket(scope: "t" | "k", id: string, name: string): string {
    return `${this.prefix}:rl:${scope}:${id}:${name}`;
  }
  /** The tokens a job's admission held, until the control plane settles them with the real count. */
  tokenHold(jobId: string): string {
    return `${this.prefix}:rl:hold:${jobId}`;
  }
  /**
   * Workers' requests for presigned offload URLs (core/contracts/offload.ts): one list for all
   * endpoints, which a worker may push to and never read (its ACL grants it write-only).
   */
  offloadRequests(): string {
    return `${this.prefix}:offload:requests`;
  }
  /** The broker's answer to one offload request, readable only by the asking endpoint's workers. */
  offloadReply(endpointId: string, requestId: string): string {
    return this.own(endpointId, `offload:${requestId}`);
  }
  private own(endpointId: string, name: string): string {
    return `${this.queuePrefix(endpointId)}:x:${name}`;
  }
  /** Buffered stream chunks of a job, drained by `/stream`. */
  stream(endpointId: string, jobId: string): string {
    return this.own(endpointId, `stream:${jobId}`);
  }
  /** The final view of a job that left BullMQ without finishing there (cancelled while queued). */
  tombstone(endpointId: string, jobId: string): string {
    return this.own(endpointId, `tomb:${jobId}`);
  }
  /** Hash of cumulative job counters of an endpoint (completed, failed, retried). */
  stats(endpointId: string): string {
    return this.own(endpointId, "stats");
  }
  /** Workers the scheduler holds back for capacity (`{throttled, waitReason}` JSON, expires unless renewed), for `/health`. */
  capacity(endpointId: string): string {
    return this.own(endpointId, "capacity");
  }
  /** Hash workerId → heartbeat JSON, for one endpoint. */
  workers(endpointId: string): string {
    return this.own(endpointId, "workers");
  }
  /** Hash workerId → ms of its last heartbeat on Redis' own clock (what `lost` is dated by). */
  workersSeen(endpointId: string): string {
    return this.own(endpointId, "seen");
  }
  /** `Idempotency-Key` of one tenant on one endpoint → the job id it created (24 h). */
  idempotency(endpointId: string, tenantId: string, keyHash: string): string {
    return this.own(endpointId, `idem:${tenantId}:${keyHash}`);
  }
  /** Pub/sub: job progress of one endpoint, for the API processes waiting on its jobs. */
  jobEventsChannel(endpointId: string): string {
    return this.own(endpointId, "ch:jobs");
  }
  /** Pub/sub: control messages to one endpoint's workers (cancel). */
  controlChannel(endpointId: string): string {
    return this.own(endpointId, "ch:control");
  }
  /**
   * List of a worker's last output lines (core/contracts/output-line.ts), kept by the scheduler that
   * runs it. Outside the endpoint's prefix: no worker can read or rewrite what it printed.
   */
  workerOutput(endpointId: string, workerId: string): string {
    return `${this.prefix}:output:${endpointId}:w:${workerId}`;
  }
  /** List of the output lines one job's worker logged with its `jobId` (see `workerOutput`). */
  jobOutput(endpointId: string, jobId: string): string {
    return `${this.prefix}:output:${endpointId}:j:${jobId}`;
  }
  /**
   * The endpoint's start breaker (core/policy/start-breaker.ts, JSON): written by the scheduler, read
   * by the API, cleared by a PATCH or `/reset`. Outside the endpoint's prefix: no worker can close it.
   */
  startBreaker(endpointId: string): string {
    return `${this.prefix}:breaker:${endpointId}`;
  }
  /** Scheduler leadership lock. */
  schedulerLock(): string {
    return `${this.prefix}:scheduler:leader`;
  }
  /**
   * Hash tenantId → its balance as of its ledger (`core/redis/balance-cache.ts`): what the job path
   * and the scheduler read instead of Postgres. Not under any endpoint's prefix: no worker reads it.
   */
  billingBalances(): string {
    return `${this.prefix}:billing:balances`;
  }
  /** Pub/sub: between API replicas only (drop cached keys and endpoints). */
  apiChannel(): string {
    return `${this.prefix}:ch:api`;
  }
  /** Pub/sub: wake the scheduler for an endpoint (the activator). */
  wakeChannel(): string {
    return `${this.prefix}:ch:wake`;
  }
}
