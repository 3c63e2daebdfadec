import type { Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { TEST_REDIS_URL } from "../../test/support/services.ts";
import { connectRedis, whenReady } from "./connect.ts";
import { coalesceWrites } from "./write-coalescing.ts";

/** Counts the socket's trips to the kernel (`_write` for one chunk, `_writev` for a corked batch). */
function countKernelWrites(redis: ReturnType<typeof connectRedis>): { count: number } {
  const socket = (redis as unknown as { stream: Socket & { _write: Function; _writev: Function } }).stream;
  const counter = { count: 0 };
  for (const name of ["_write", "_writev"] as const) {
    const original = socket[name].bind(socket);
    socket[name] = (...args: unknown[]) => {
      counter.count += 1;
      return original(...args);
    };
  }
  return counter;
}

describe("coalesceWrites on the shared test Redis", () => {
  const clients: ReturnType<typeof connectRedis>[] = [];
  afterEach(() => {
    for (const c of clients.splice(0)) c.disconnect();
  });

  async function client(coalesce: boolean) {
    const redis = connectRedis(TEST_REDIS_URL);
    clients.push(redis);
    await whenReady(redis, TEST_REDIS_URL);
    if (coalesce) coalesceWrites(redis);
    return redis;
  }

  it("sends the commands of one event-loop turn in one socket write, replies in order", async () => {
    const redis = await client(true);
    const writes = countKernelWrites(redis);
    const key = `coalesce-test:${process.pid}`;
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => redis.eval("return ARGV[1]", 0, `r${i}`)));
    expect(replies).toEqual(Array.from({ length: 50 }, (_, i) => `r${i}`));
    expect(writes.count).toBe(1);
    // A later turn is a later write, and still answered.
    expect(await redis.set(key, "v", "PX", 10_000)).toBe("OK");
    expect(writes.count).toBe(2);
    expect(await redis.get(key)).toBe("v");
  });

  it("without it, each command is its own write (the control for the count above)", async () => {
    const redis = await client(false);
    const writes = countKernelWrites(redis);
    await Promise.all(Array.from({ length: 10 }, (_, i) => redis.eval("return ARGV[1]", 0, `r${i}`)));
    expect(writes.count).toBe(10);
  });

  it("keeps coalescing on the new socket after a reconnect", async () => {
    const redis = await client(true);
    const id = await redis.client("ID");
    const admin = await client(false);
    const reconnected = new Promise<void>((resolve) => redis.once("ready", () => resolve()));
    await admin.client("KILL", "ID", String(id));
    await reconnected;
    const writes = countKernelWrites(redis);
    const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => redis.eval("return ARGV[1]", 0, `s${i}`)));
    expect(replies).toEqual(Array.from({ length: 20 }, (_, i) => `s${i}`));
    expect(writes.count).toBe(1);
  });
});
