import type { Redis } from "ioredis";
import { z } from "zod";

const timeReply = z.tuple([z.coerce.number().int().min(0), z.coerce.number().int().min(0).max(999_999)]);

/**
 * Now on Redis' clock (TIME), in ms epoch: the clock that dates the event log's entries, and so
 * the one billing trusts (a host's own clock may be off; every host shares this one).
 */
export async function redisNowMs(redis: Redis): Promise<number> {
  const [seconds, micros] = timeReply.parse(await redis.time());
  return seconds * 1000 + Math.floor(micros / 1000);
}
