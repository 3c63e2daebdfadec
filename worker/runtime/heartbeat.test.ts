import { afterAll, describe, expect, it } from "vitest";
import { workerHeartbeat, type WorkerState } from "../../core/contracts/worker-state.ts";
import { parseLogEntry, type WorkerPayload } from "../../core/log/log-entry.ts";
import { RedisKeys } from "../../core/queue/keys.ts";
import { connectRedis } from "../../core/redis/connect.ts";
import { readLog } from "../../test/support/event-log-probe.ts";
import { clearPrefix, TEST_REDIS_URL, uniquePrefix } from "../../test/support/services.ts";
import { Heartbeat } from "./heartbeat.ts";

const prefix = uniquePrefix();
const keys = new RedisKeys(prefix);
const redis = connectRedis(TEST_REDIS_URL);

afterAll(async () => {
  await clearPrefix(redis, prefix);
  redis.disconnect();
});

/** A heartbeat over a state the test sets, and the worker entries it logged. */
function heartbeatOf(endpointId: string) {
  let state: WorkerState = "initializing";
  const heartbeat = new Heartbeat({
    redis,
    keys,
    endpointId,
    workerId: "w1",
    intervalMs: 60_000,
    snapshot: () => ({ state, running: 0, concurrency: 1, idleSince: null }),
    onError: (err) => {
      throw err;
    },
  });
  const logged = async (): Promise<WorkerPayload[]> =>
    (await readLog(redis, keys.log(endpointId))).flatMap((e) => {
      const p = parseLogEntry(e.id, [...e.fields].flat());
      return p.kind === "worker" ? [p.p] : [];
    });
  return { heartbeat, logged, set: (s: WorkerState) => (state = s) };
}

describe("Heartbeat: a report attached to the next logged transition", () => {
  it("rides on the first transition logged after it, once, and not on beats that log nothing", async () => {
    const { heartbeat, logged, set } = heartbeatOf("ep-once");
    await heartbeat.beat();
    heartbeat.attachToNextTransition({ weightsFetchMs: 1234 });
    await heartbeat.beat(); // still initializing: nothing logged, the report waits
    set("idle");
    await heartbeat.beat();
    await heartbeat.beat();
    set("running");
    await heartbeat.beat();
    await heartbeat.stop("done");
    expect(await logged()).toEqual([
      { workerId: "w1", state: "initializing" },
      { workerId: "w1", state: "idle", weightsFetchMs: 1234 },
      { workerId: "w1", state: "running" },
      { workerId: "w1", state: "exited", reason: "done", by: "worker" },
    ]);
  });

  it("is logged once when beats overlap on one state change", async () => {
    const { heartbeat, logged, set } = heartbeatOf("ep-overlap");
    await heartbeat.beat();
    heartbeat.attachToNextTransition({ weightsFetchMs: 50 });
    set("idle");
    // Both start before either has written: both log the change (as before), one carries the report.
    await Promise.all([heartbeat.beat(), heartbeat.beat()]);
    await heartbeat.stop("done");
    const entries = await logged();
    expect(entries.filter((e) => e.weightsFetchMs !== undefined)).toEqual([{ workerId: "w1", state: "idle", weightsFetchMs: 50 }]);
  });

  it("logs nothing extra when no report was attached", async () => {
    const { heartbeat, logged, set } = heartbeatOf("ep-none");
    await heartbeat.beat();
    set("idle");
    await heartbeat.beat();
    await heartbeat.stop("done");
    expect((await logged()).some((e) => "weightsFetchMs" in e)).toBe(false);
  });
});

describe("Heartbeat: the metrics port", () => {
  it("is in every beat when the worker serves /metrics, reads back through the contract, and a bad one reads as absent", async () => {
    const heartbeat = new Heartbeat({
      redis,
      keys,
      endpointId: "ep-port",
      workerId: "w1",
      intervalMs: 60_000,
      metricsPort: 41234,
      snapshot: () => ({ state: "idle", running: 0, concurrency: 1, idleSince: 5 }),
      onError: (err) => {
        throw err;
      },
    });
    await heartbeat.beat();
    const raw = await redis.hget(keys.workers("ep-port"), "w1");
    expect(workerHeartbeat.parse(JSON.parse(raw!))).toMatchObject({ id: "w1", state: "idle", metricsPort: 41234 });
    await heartbeat.stop("done");
    const { metricsPort: _none, ...without } = workerHeartbeat.parse(JSON.parse(raw!));
    expect(workerHeartbeat.parse(without).metricsPort).toBeUndefined();
    for (const bad of [0, 70_000, 1.5, "41234", null]) expect(workerHeartbeat.parse({ ...without, metricsPort: bad })).toEqual(without);
  });
});
