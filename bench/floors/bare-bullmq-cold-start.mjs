/**
 * The floor of the cold-start benchmark: the least a Node process can do to take one BullMQ job
 * from Redis and finish it. Plain JavaScript (no loader), the same bullmq and ioredis as Hearth's
 * worker; its processor returns the job's data, and it exits once that job has finished. The bench
 * adds the job before it spawns this process. Env: REDIS_URL, BENCH_REDIS_PREFIX, BENCH_QUEUE.
 * Prints its phases as JSON lines with `ms` since the process started, as Hearth's worker does:
 * `ready` (the Worker is connected), `taken` (the processor runs), `finished`.
 */
import { performance } from "node:perf_hooks";
import { Worker } from "bullmq";
import { Redis } from "ioredis";

// `time` (wall clock) with `ms` dates the process start, as the bench does for Hearth's worker from its pino lines.
const phase = (name) => console.log(JSON.stringify({ t: "floor-cold-start", phase: name, ms: Math.round(performance.now()), time: Date.now() }));

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = process.env.BENCH_REDIS_PREFIX;
const queueName = process.env.BENCH_QUEUE;
if (!prefix || !queueName) throw new Error("BENCH_REDIS_PREFIX and BENCH_QUEUE are required");

const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const worker = new Worker(
  queueName,
  async (job) => {
    phase("taken");
    return job.data;
  },
  { connection, prefix, concurrency: 1 },
);
worker.on("error", (err) => console.error(JSON.stringify({ t: "floor-cold-start", level: "error", error: String(err) })));
worker.once("completed", () => {
  phase("finished");
  void worker
    .close()
    .then(() => connection.quit())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    );
});
await worker.waitUntilReady();
phase("ready");
