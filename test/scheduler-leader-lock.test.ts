import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis/connect.ts";
import { LeaderLock } from "../scheduler/leader-lock.ts";
import { TEST_REDIS_URL, clearPrefix, uniquePrefix, waitFor } from "./support/services.ts";

let redis: Redis;
const prefix = uniquePrefix();
let n = 0;
const locks: LeaderLock[] = [];

beforeAll(() => {
  redis = connectRedis(TEST_REDIS_URL);
});
afterEach(async () => {
  await Promise.all(locks.splice(0).map((l) => l.release()));
});
afterAll(async () => {
  await clearPrefix(redis, prefix);
  await redis.quit();
});

function lock(key: string, ownerId: string, changes: boolean[] = []) {
  const l = new LeaderLock({ redis, key, ownerId, ttlMs: 600, onChange: (leader) => changes.push(leader) });
  locks.push(l);
  return l;
}

describe("LeaderLock on real Redis", () => {
  it("gives the lock to one owner, renews it past its ttl, and hands it over on release", async () => {
    const key = `${prefix}:lock:${++n}`;
    const aChanges: boolean[] = [];
    const bChanges: boolean[] = [];
    const a = lock(key, "a", aChanges);
    const b = lock(key, "b", bChanges);
    await a.start();
    await b.start();
    expect(a.isLeader).toBe(true);
    expect(b.isLeader).toBe(false);

    // Several ttls later the lock is still a's: renewals keep it, b's tries fail.
    await waitFor(async () => (await redis.pttl(key)) > 0 && aChanges.length === 1, 5000);
    const deadline = Date.now() + 2000;
    await waitFor(() => Date.now() > deadline, 5000);
    expect(await redis.get(key)).toBe("a");
    expect(a.isLeader).toBe(true);
    expect(b.isLeader).toBe(false);

    await a.release();
    expect(aChanges).toEqual([true, false]);
    await waitFor(() => b.isLeader, 5000);
    expect(bChanges).toEqual([true]);
    expect(await redis.get(key)).toBe("b");
  });

  it("notices when another owner holds its key, and never deletes a lock that is not its own", async () => {
    const key = `${prefix}:lock:${++n}`;
    const changes: boolean[] = [];
    const a = lock(key, "a", changes);
    await a.start();
    expect(a.isLeader).toBe(true);

    await redis.set(key, "intruder", "PX", 60_000);
    await waitFor(() => !a.isLeader, 5000);
    expect(changes).toEqual([true, false]);
    await a.release();
    expect(await redis.get(key)).toBe("intruder");
  });
});
