import { Redis, type RedisOptions } from "ioredis";

/**
 * A Redis connection for BullMQ or for our own commands. `maxRetriesPerRequest: null` is what
 * BullMQ requires of connections it blocks on; for ours it means a command waits out a Redis
 * restart instead of failing after 20 tries.
 */
export function connectRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...options });
}

/**
 * Resolves once the connection is ready (connected and past its ready check). Subscribing before
 * that races ioredis' own ready check (INFO), which Redis refuses on a subscribed connection.
 */
export function whenReady(redis: Redis, url: string): Promise<void> {
  if (redis.status === "ready") return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const onReady = () => {
      redis.off("end", onEnd);
      resolve();
    };
    const onEnd = () => {
      redis.off("ready", onReady);
      reject(new Error(`Redis at ${url} is unreachable`));
    };
    redis.once("ready", onReady);
    redis.once("end", onEnd);
  });
}
