/**
 * Every Redis name Hearth uses, in one place. All share the prefix (a Redis Cluster hash tag by
 * default) so BullMQ's multi-key scripts and ours stay in one slot.
 */
export class RedisKeys {
  constructor(readonly prefix: string) {}

  /** BullMQ queue name of an endpoint (BullMQ forbids ':' in queue names). */
  queueName(endpointId: string): string {
    return `ep.${endpointId}`;
  }
  /** Buffered stream chunks of a job, drained by `/stream`. */
  stream(jobId: string): string {
    return `${this.prefix}:stream:${jobId}`;
  }
  /** The final view of a job that left BullMQ without finishing there (cancelled while queued). */
  tombstone(jobId: string): string {
    return `${this.prefix}:tomb:${jobId}`;
  }
  /** Hash of cumulative job counters of an endpoint (completed, failed, retried). */
  stats(endpointId: string): string {
    return `${this.prefix}:stats:${endpointId}`;
  }
  /** Hash workerId → heartbeat JSON, for one endpoint. */
  workers(endpointId: string): string {
    return `${this.prefix}:workers:${endpointId}`;
  }
  /** Scheduler leadership lock. */
  schedulerLock(): string {
    return `${this.prefix}:scheduler:leader`;
  }
  /** Pub/sub: job progress for waiters (runsync, status-sync, stream). */
  jobEventsChannel(): string {
    return `${this.prefix}:ch:jobs`;
  }
  /** Pub/sub: control messages to workers and API replicas (cancel, cache invalidation). */
  controlChannel(): string {
    return `${this.prefix}:ch:control`;
  }
  /** Pub/sub: wake the scheduler for an endpoint (the activator). */
  wakeChannel(): string {
    return `${this.prefix}:ch:wake`;
  }
}
