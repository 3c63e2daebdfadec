import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis/connect.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { BootHeartbeats } from "../scheduler/boot-heartbeats.ts";
import { TEST_REDIS_URL, clearPrefix, uniquePrefix } from "./support/services.ts";

let redis: Redis;
const prefix = uniquePrefix();
const keys = new RedisKeys(prefix);

beforeAll(() => {
  redis = connectRedis(TEST_REDIS_URL);
});
afterAll(async () => {
  await clearPrefix(redis, prefix);
  await redis.quit();
});

const read = async (workerId: string) => {
  const raw = await redis.hget(keys.workers("ep"), workerId);
  return raw === null ? null : workerHeartbeat.parse(JSON.parse(raw));
};

describe("BootHeartbeats on real Redis", () => {
  it("keeps a stand-in fresh until the worker writes its own, then leaves the worker's alone", async () => {
    const boot = new BootHeartbeats(redis, keys);
    for (const id of ["w-a", "w-b"]) await redis.hset(keys.workers("ep"), id, JSON.stringify(boot.standIn("ep", id, 1000)));
    expect(await read("w-a")).toMatchObject({ id: "w-a", endpointId: "ep", state: "requested", at: 1000 });

    await boot.refresh(2000);
    expect(await read("w-a")).toMatchObject({ state: "requested", at: 2000 });

    const own = { id: "w-a", endpointId: "ep", state: "idle", running: 0, concurrency: 4, idleSince: 2500, at: 2500 };
    await redis.hset(keys.workers("ep"), "w-a", JSON.stringify(own));
    await redis.hdel(keys.workers("ep"), "w-b"); // exited and cleaned
    await boot.refresh(3000);
    await boot.refresh(4000);
    expect(await read("w-a")).toEqual(own);
    expect(await read("w-b")).toBeNull();
  });
});
