import { Redis, type RedisOptions } from "ioredis";

/**
 * A Redis connection for BullMQ or for our own commands. `maxRetriesPerRequest: null` is what
 * BullMQ requires of connections it blocks on; for ours it means a command waits out a Redis
 * restart instead of failing after 20 tries.
 */
export function connectRedis(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true, ...options });
}
