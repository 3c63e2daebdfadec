import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisKeys } from "../core/queue/keys.ts";
import { OUTPUT_LINE_MAX_CHARS, OUTPUT_LINES_KEPT, outputLine } from "../core/contracts/output-line.ts";
import type { LogLine } from "../core/log/process-log.ts";
import { startOwnRedis, type OwnRedis } from "../test/support/own-redis.ts";
import { WorkerOutput } from "./worker-output.ts";

/** The scheduler's keeping of workers' lines, on a Redis this test owns (it is stopped and started). */
describe("WorkerOutput", () => {
  let server: OwnRedis;
  let redis: Redis;
  const keys = new RedisKeys("{wo-test}");
  const w = { endpointId: "ep-1", workerId: "w-1" };
  const read = async (key: string) => (await redis.lrange(key, 0, -1)).map((s) => outputLine.parse(JSON.parse(s)));

  beforeAll(async () => {
    server = await startOwnRedis({ aof: false });
    redis = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
    redis.on("error", () => {});
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.destroy();
  });

  it("keeps a worker's lines, and a job's lines under the job too, bounded and cut", async () => {
    await redis.flushall();
    const out = new WorkerOutput({ redis, keys, flushMs: 5, now: () => 42 });
    out.add(w, "stdout", JSON.stringify({ msg: "job finished", jobId: "job-1", traceId: "t" }));
    out.add(w, "stderr", "plain text, no job");
    out.add(w, "stdout", '{"jobId": 7}'); // not a job id: worker only
    out.add(w, "stdout", "x".repeat(OUTPUT_LINE_MAX_CHARS + 100));
    for (let i = 0; i < OUTPUT_LINES_KEPT + 5; i++) out.add(w, "stdout", JSON.stringify({ msg: `n${i}`, jobId: "job-2" }));
    await out.close();
    const worker = await read(keys.workerOutput("ep-1", "w-1"));
    expect(worker).toHaveLength(OUTPUT_LINES_KEPT);
    expect(worker.at(-1)).toEqual({ at: 42, stream: "stdout", line: JSON.stringify({ msg: `n${OUTPUT_LINES_KEPT + 4}`, jobId: "job-2" }) });
    expect(await read(keys.jobOutput("ep-1", "job-1"))).toEqual([{ at: 42, stream: "stdout", line: JSON.stringify({ msg: "job finished", jobId: "job-1", traceId: "t" }) }]);
    expect(await redis.llen(keys.jobOutput("ep-1", "job-2"))).toBe(OUTPUT_LINES_KEPT);
    expect(await redis.ttl(keys.workerOutput("ep-1", "w-1"))).toBeGreaterThan(0);
  });

  it("cuts an overlong line to the limit", async () => {
    await redis.flushall();
    const out = new WorkerOutput({ redis, keys, flushMs: 5 });
    out.add(w, "stdout", "y".repeat(OUTPUT_LINE_MAX_CHARS * 3));
    await out.close();
    const [line] = await read(keys.workerOutput("ep-1", "w-1"));
    expect(line!.line).toHaveLength(OUTPUT_LINE_MAX_CHARS);
    expect(line!.line.endsWith("…")).toBe(true);
  });

  it("holds lines while Redis is away and writes them, in order, once it is back; beyond its bound it drops and says so", async () => {
    await redis.flushall();
    const logged: LogLine[] = [];
    const out = new WorkerOutput({ redis, keys, flushMs: 5, maxBuffered: 10, log: (l) => void logged.push(l) });
    await server.stop();
    for (let i = 0; i < 15; i++) out.add(w, "stdout", `line ${i}`);
    await out.flush(); // fails: kept
    expect(logged.some((l) => l.msg === "worker output not written")).toBe(true);
    await server.start();
    await redis.ping().catch(() => {});
    await out.flush();
    await out.close();
    const lines = (await read(keys.workerOutput("ep-1", "w-1"))).map((l) => l.line);
    expect(lines).toEqual(Array.from({ length: 10 }, (_, i) => `line ${i}`));
    expect(logged.find((l) => l.msg === "worker output lines dropped while Redis was away")).toMatchObject({ dropped: 5 });
  });
});
