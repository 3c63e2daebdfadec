/**
 * The benchmarks' floors over HTTP and BullMQ together: the least a `/runsync` or a `/run` on this
 * stack can cost — a bare Hono handler (on @hono/node-server) that parses the body and adds it to a
 * BullMQ queue, then (`/runsync`) waits for the bare worker's result on QueueEvents or (`/run`)
 * answers with the job's id at once. No auth, no validation, no log, no control plane. Its queue's
 * connection coalesces each event-loop turn's writes as Hearth's API does (core/redis/write-coalescing.ts),
 * so the floor has the lever Hearth has. Env: REDIS_URL, BENCH_REDIS_PREFIX, BENCH_QUEUE.
 * Prints `{"t":"floor-hono-bullmq","msg":"listening","port":N}` once it listens; exits on SIGTERM.
 */
import { serve } from "@hono/node-server";
import { Queue, QueueEvents } from "bullmq";
import { Hono } from "hono";
import { Redis } from "ioredis";
import { coalesceWrites } from "../../core/redis/write-coalescing.ts";

const redisUrl = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const prefix = process.env.BENCH_REDIS_PREFIX;
const queueName = process.env.BENCH_QUEUE;
if (!prefix || !queueName) throw new Error("BENCH_REDIS_PREFIX and BENCH_QUEUE are required");

const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
const eventsConnection = new Redis(redisUrl, { maxRetriesPerRequest: null });
coalesceWrites(connection);
const queue = new Queue(queueName, { connection, prefix });
const queueEvents = new QueueEvents(queueName, { connection: eventsConnection, prefix });
await queueEvents.waitUntilReady();

const app = new Hono();
app.post("/runsync", async (c) => {
  const body: unknown = await c.req.json();
  const job = await queue.add("noop", body, { removeOnComplete: { age: 60 }, removeOnFail: { age: 60 } });
  const output: unknown = await job.waitUntilFinished(queueEvents, 15_000);
  return c.json({ id: job.id, status: "COMPLETED", output }, 200);
});

app.post("/run", async (c) => {
  const body: unknown = await c.req.json();
  const job = await queue.add("noop", body);
  return c.json({ id: job.id, status: "IN_QUEUE" }, 200);
});

const server = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info) => {
  console.log(JSON.stringify({ t: "floor-hono-bullmq", msg: "listening", port: info.port }));
});

process.on("SIGTERM", () => {
  server.close(() => {
    void Promise.all([queueEvents.close(), queue.close()]).finally(() => {
      connection.disconnect();
      eventsConnection.disconnect();
      process.exit(0);
    });
  });
  (server as { closeAllConnections?: () => void }).closeAllConnections?.();
});
