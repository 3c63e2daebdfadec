import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import postgres from "postgres";

/** A database and a Redis prefix no one else uses, for one bench run. */
export interface Isolation {
  databaseName: string;
  /** Does not exist yet: the API's migrateDb creates it. */
  databaseUrl: string;
  redisPrefix: string;
}

export function newIsolation(pgBaseUrl: string): Isolation {
  const suffix = randomBytes(5).toString("hex");
  const databaseName = `hearth_bench_${suffix}`;
  return {
    databaseName,
    databaseUrl: `${pgBaseUrl.replace(/\/+$/, "")}/${databaseName}`,
    redisPrefix: `{hearth-bench-${suffix}}`,
  };
}

/** Drops the run's database, ending any connection left open (`with (force)`, Postgres 13+). */
export async function dropDatabase(pgBaseUrl: string, name: string): Promise<void> {
  const admin = postgres(`${pgBaseUrl.replace(/\/+$/, "")}/postgres`, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists "${name.replaceAll('"', '""')}" with (force)`);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** Deletes every key under the prefix; returns how many. */
export async function clearRedisPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = "0";
  let removed = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
    cursor = next;
    if (keys.length > 0) removed += await redis.unlink(...keys);
  } while (cursor !== "0");
  return removed;
}
