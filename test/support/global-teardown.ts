import postgres from "postgres";
import { Redis } from "ioredis";

/**
 * After the whole run: remove what test files left on the shared servers (every test prefix and
 * database is unique, so nothing here belongs to anything but a test). Files clean up after
 * themselves where they can; this catches what a failed or killed file could not.
 */
export async function teardown(): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", { lazyConnect: true });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", "{hearth-test-*", "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.unlink(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
  const sql = postgres(`${process.env.TEST_PG_BASE_URL ?? "postgres://postgres@127.0.0.1:5432"}/postgres`, { max: 1, onnotice: () => {} });
  try {
    const dbs = await sql<{ datname: string }[]>`select datname from pg_database where datname like 'hearth\\_test\\_%'`;
    for (const { datname } of dbs) await sql.unsafe(`drop database if exists "${datname}" with (force)`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}
