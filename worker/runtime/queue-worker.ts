import { Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { JobResult } from "../../core/queue/job-catalog.ts";
import { reportFailedByQueue } from "./finish-reporter.ts";
import type { JobProcessor } from "./job-processor.ts";
import type { WorkerRuntimeOptions } from "./worker-runtime-options.ts";

/** The runtime's options the queue worker is made with: its Redis, prefix, endpoint, name and lock. */
export type QueueWorkerOptions = Pick<WorkerRuntimeOptions, "redis" | "redisPrefix" | "endpointId" | "workerId" | "lockMs"> & {
  keys: RedisKeys;
  /** Jobs it runs at once. */
  concurrency: number;
  /** Runs each job; never throws. */
  process: JobProcessor;
  /** Errors of the queue worker and of failure reports. */
  onError: (err: unknown, context: string) => void;
  /** Keeps a failure report in flight for a drain to wait for. */
  track: (p: Promise<void>, context: string) => void;
  now: () => number;
};

/** A BullMQ `Worker` on the endpoint's queue; it takes no job until its `run()`. */
export function createQueueWorker(options: QueueWorkerOptions): Worker {
  const w = new Worker(options.keys.queueName(options.endpointId), options.process, {
    connection: options.redis,
    prefix: options.redisPrefix,
    // BullMQ records it as job.processedBy, which is how the API reports a job's workerId.
    name: options.workerId,
    concurrency: options.concurrency,
    lockDuration: options.lockMs,
    stalledInterval: Math.max(1000, Math.floor(options.lockMs / 2)),
    maxStalledCount: 2,
    autorun: false,
  });
  w.on("error", (err) => options.onError(err, "queue"));
  // Our processor never throws, so `failed` here is BullMQ's own verdict (a job that stalled more
  // than maxStalledCount, failed as this worker took it): tell the waiters, as a finish would.
  w.on("failed", (job, err) => {
    if (!job?.id) return;
    const now = options.now();
    const result: JobResult = { status: "FAILED", error: job.failedReason || err.message, workerId: options.workerId, startedAt: now, finishedAt: now };
    options.track(reportFailedByQueue({ redis: options.redis, keys: options.keys, endpointId: options.endpointId }, job.id, result), "failed report");
  });
  return w;
}

/** Pings `redis`; when it does not answer within a second, drops the connection so ioredis opens a new one. */
export async function freshConnection(redis: Redis): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const silent = new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 1000)));
  const answered = await Promise.race([redis.ping().then(() => false, () => true), silent]);
  clearTimeout(timer);
  if (answered) redis.disconnect(true);
}
