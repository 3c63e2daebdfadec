import { openDb } from "../../core/db/client.ts";
import { RedisKeys } from "../../core/queue/keys.ts";
import { connectRedis } from "../../core/redis/connect.ts";
import { TEST_REDIS_URL, clearPrefix, createTestDatabase, uniquePrefix } from "./services.ts";

/**
 * Test-owned clients of the shared servers: a database, a prefix and a Redis connection, each undone
 * through `defer` (the test file's cleanup list) after the test.
 */
export async function sharedFixture(defer: (fn: () => Promise<unknown>) => void) {
  const db = await createTestDatabase();
  defer(db.drop);
  const prefix = uniquePrefix();
  const redis = connectRedis(TEST_REDIS_URL);
  defer(async () => {
    await clearPrefix(redis, prefix);
    redis.disconnect();
  });
  const dbh = openDb(db.url, { max: 3 });
  defer(() => dbh.close());
  return { db, prefix, keys: new RedisKeys(prefix), redis, sql: dbh.sql };
}
