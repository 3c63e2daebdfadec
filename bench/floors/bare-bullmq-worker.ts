/**
 * The floor of the runsync latency benchmark: a bare BullMQ Worker (concurrency 1) whose processor
 * returns the job's data — the least a queue round trip on the same Redis can cost. The bench
 * process adds the jobs and waits on QueueEvents. Env: REDIS_URL, BENCH_REDIS_PREFIX, BENCH_QUEUE.
 * Prints `{"t":"floor-worker","msg":"ready"}` once it takes jobs; closes on SIGTERM.
 */
import { Worker } from "bullmq";
import { Redis } from "ioredis";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = process.env.BENCH_REDIS_PREFIX;
const queueName = process.env.BENCH_QUEUE;
if (!prefix || !queueName) throw new Error("BENCH_REDIS_PREFIX and BENCH_QUEUE are required");

const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const worker = new Worker(queueName, async (job) => job.data, { connection, prefix, concurrency: 1 });
worker.on("error", (err) => console.error(JSON.stringify({ t: "floor-worker", level: "error", error: String(err) })));

await worker.waitUntilReady();
console.log(JSON.stringify({ t: "floor-worker", msg: "ready" }));

process.on("SIGTERM", () => {
  void worker
    .close()
    .then(() => connection.quit())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    );
});
