import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { migrateDb } from "../../core/db/client.ts";

export const TEST_REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";
const PG_BASE = process.env.TEST_PG_BASE_URL ?? "postgres://postgres@127.0.0.1:5432";

/** This test run's id (set by the global setup; a file run outside vitest's setup gets its own). */
const RUN_ID = (process.env.HEARTH_TEST_RUN ??= `${Math.floor(Date.now() / 60_000).toString(36)}x${randomBytes(3).toString("hex")}`);

/** A Redis key prefix no other test uses (still a hash tag, as in production), under this run's id. */
export function uniquePrefix(): string {
  return `{hearth-test-${RUN_ID}-${randomBytes(5).toString("hex")}}`;
}

/** A fresh, migrated database for one test file; `drop()` removes it. */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `hearth_test_${RUN_ID}_${randomBytes(5).toString("hex")}`;
  const url = `${PG_BASE}/${name}`;
  await migrateDb(url);
  return {
    url,
    drop: async () => {
      const admin = postgres(`${PG_BASE}/postgres`, { max: 1, onnotice: () => {} });
      try {
        await admin.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await admin.end({ timeout: 5 });
      }
    },
  };
}

/** Deletes every Redis key under a test prefix. */
export async function clearPrefix(redis: import("ioredis").Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== "0");
}

/** Polls `fn` until it returns a truthy value or `timeoutMs` passes; for waiting on other processes, not for timing. */
export async function waitFor<T>(fn: () => Promise<T> | T, timeoutMs = 20_000, stepMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`waitFor timed out after ${timeoutMs}ms${last ? `: ${String(last)}` : ""}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** A TCP port free on loopback right now (for a server a test starts itself). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
