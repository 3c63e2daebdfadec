import { Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { RedisKeys } from "../core/queue/keys.ts";
import type { JobResult } from "../core/queue/job-catalog.ts";
import type { JobEvent } from "../core/queue/messages.ts";
import { parseLogEntry } from "../core/log/log-entry.ts";
import { crashLoopError, currentBreaker, isOpen, parseBreaker, recordFailedStart, recordReady, type BreakerState } from "../core/policy/start-breaker.ts";
import { errorFields, type Log } from "../core/log/process-log.ts";
import type { SchedulableEndpoint } from "./endpoints.ts";
import type { ProvidedWorker } from "./providers/provider.ts";

export interface StartBreakersOptions {
  redis: Redis;
  keys: RedisKeys;
  now: () => number;
  log: Log;
  /** Stops the endpoint's workers that are not ready yet (called as its breaker opens). */
  stopBooting: (endpointId: string, isReady: (workerId: string) => boolean) => void;
}

/** The `workerId` a job failed by the breaker reports: no worker ran it. */
export const BREAKER_WORKER_ID = "hearth-scheduler";
/** Log entries read back to find a failed worker's own exit reason. */
const REASON_SCAN = 200;

/**
 * The scheduler's side of the endpoints' start breakers (core/policy/start-breaker.ts): counts
 * failed starts (a worker that ends, unasked, before it was ever seen ready; a start the provider
 * refused), stores each breaker in Redis (outside every endpoint's prefix, so it survives a
 * scheduler restart and no worker can close it) and, while one is open, fails what waits in its
 * queue and holds its starts.
 */
export class StartBreakers {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  /** Workers seen ready (idle or running): one that ends before it is here is a failed start. */
  private readonly readySeen = new Set<string>();
  /** The last read of each endpoint: a failed start counts against its revision and its maxFailedStarts. */
  private readonly lastRead = new Map<string, SchedulableEndpoint>();
  /** Updates of one endpoint's breaker, one after the other (read, change, write). */
  private readonly chains = new Map<string, Promise<void>>();

  constructor(private readonly opts: StartBreakersOptions) {
    this.redis = opts.redis;
    this.keys = opts.keys;
  }

  /**
   * At a converge: remembers the endpoint and its ready workers (a ready one clears the count) and,
   * when its breaker is open, fails its queued jobs. True while open: no worker may start.
   */
  async holds(endpoint: SchedulableEndpoint, readyWorkers: readonly string[], queued: number): Promise<boolean> {
    this.lastRead.set(endpoint.id, endpoint);
    for (const id of readyWorkers) this.readySeen.add(id);
    let open = false;
    await this.serial(endpoint.id, async () => {
      const state = await this.read(endpoint.id, endpoint.revision);
      open = isOpen(state);
      if (!open && readyWorkers.length > 0 && state.failedStarts > 0) await this.write(endpoint.id, recordReady(state));
      if (open && queued > 0) await this.failQueuedLogged(endpoint.id, crashLoopError(state));
    });
    return open;
  }

  /** A worker ended: unasked and never seen ready, it is a failed start. */
  exited(w: ProvidedWorker, requested: boolean): void {
    const wasReady = this.readySeen.delete(w.workerId);
    if (!requested && !wasReady) this.failed(w.endpointId, () => this.startError(w.endpointId, w.workerId, w.exitCode));
  }

  /** The provider refused a start. */
  startFailed(endpointId: string, error: string): void {
    this.failed(endpointId, () => Promise.resolve(error));
  }

  private failed(endpointId: string, error: () => Promise<string>): void {
    void this.serial(endpointId, async () => {
      const endpoint = this.lastRead.get(endpointId);
      if (!endpoint) return;
      const before = await this.read(endpointId, endpoint.revision);
      const after = recordFailedStart(before, { error: await error(), now: this.opts.now(), maxFailedStarts: endpoint.maxFailedStarts });
      if (after === before) return;
      await this.write(endpointId, after);
      if (!isOpen(after)) return;
      this.opts.log({ level: "error", msg: "start breaker open: workers keep failing to start", endpointId, failedStarts: after.failedStarts, lastError: after.lastError });
      this.opts.stopBooting(endpointId, (id) => this.readySeen.has(id));
      await this.failQueuedLogged(endpointId, crashLoopError(after));
    });
  }

  /** Resolves once every breaker update in flight has been written. */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.allSettled([...this.chains.values()]);
  }

  private async failQueuedLogged(endpointId: string, error: string): Promise<void> {
    const failed = await this.failQueued(endpointId, error, this.opts.now);
    if (failed > 0) this.opts.log({ level: "warn", msg: "queued jobs failed: start breaker open", endpointId, failed });
  }

  private serial(endpointId: string, step: () => Promise<void>): Promise<void> {
    const next = (this.chains.get(endpointId) ?? Promise.resolve())
      .then(step)
      .catch((err: unknown) => this.opts.log({ level: "error", msg: "start breaker update failed", endpointId, ...errorFields(err) }));
    this.chains.set(endpointId, next);
    void next.finally(() => {
      if (this.chains.get(endpointId) === next) this.chains.delete(endpointId);
    });
    return next;
  }

  /** The endpoint's breaker for its current revision (a damaged value reads closed). */
  async read(endpointId: string, revision: number): Promise<BreakerState> {
    const raw = await this.redis.get(this.keys.startBreaker(endpointId));
    return currentBreaker(parseBreaker(raw), revision);
  }

  async write(endpointId: string, state: BreakerState): Promise<void> {
    await this.redis.set(this.keys.startBreaker(endpointId), JSON.stringify(state));
  }

  /**
   * Why a worker that never got ready ended: its own `exited` entry's reason (the worker logs
   * `engine failed to start: …` before its process ends), else the exit code.
   */
  async startError(endpointId: string, workerId: string, exitCode: number | undefined): Promise<string> {
    const entries = (await this.redis.xrevrange(this.keys.log(endpointId), "+", "-", "COUNT", REASON_SCAN)) as [string, string[]][];
    for (const [id, fields] of entries) {
      try {
        const e = parseLogEntry(id, fields);
        // The worker's own word, not the scheduler's "process ended" logged after it.
        if (e.kind === "worker" && e.p.workerId === workerId && e.p.state === "exited" && e.p.by !== "scheduler" && e.p.reason) return e.p.reason;
      } catch {
        // an entry of no concern here
      }
    }
    return exitCode === undefined ? "worker ended before it was ready" : `worker exited with code ${exitCode} before it was ready`;
  }

  /**
   * Fails every job waiting in the endpoint's queue with `error`, through the path a worker's failed
   * job takes: BullMQ moves it to active and then to completed with a FAILED envelope (both logged
   * in the endpoint's event log, so records, webhooks and the audit see it once), and the API's
   * waiters are told. Delayed jobs are left until they are due. Returns how many failed.
   */
  async failQueued(endpointId: string, error: string, now: () => number): Promise<number> {
    const queueName = this.keys.queueName(endpointId);
    const worker = new Worker(queueName, null, { connection: this.redis, prefix: this.keys.prefix, name: BREAKER_WORKER_ID, autorun: false });
    worker.on("error", () => {}); // surfaced by the calls below
    let failed = 0;
    try {
      const token = `breaker-${now()}`;
      for (;;) {
        const job = await worker.getNextJob(token, { block: false });
        if (!job?.id) break;
        const at = now();
        const result: JobResult = { status: "FAILED", error, workerId: BREAKER_WORKER_ID, startedAt: at, finishedAt: at };
        await job.moveToCompleted(result, token, false);
        const event: JobEvent = { type: "finished", jobId: job.id, endpointId, result };
        await this.redis.multi().hincrby(this.keys.stats(endpointId), "failed", 1).publish(this.keys.jobEventsChannel(endpointId), JSON.stringify(event)).exec();
        failed++;
      }
    } finally {
      await worker.close(true).catch(() => {});
    }
    return failed;
  }
}
