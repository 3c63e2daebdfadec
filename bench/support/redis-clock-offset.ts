import type { Redis } from "ioredis";
import { round } from "./latency-stats.ts";
import { localEpochMs } from "./webhook-receiver.ts";

/** Redis' clock minus this process's `localEpochMs()`, in ms, as one estimate. */
export interface ClockOffset {
  offsetMs: number;
  /** Round trip of the TIME call the estimate comes from: the estimate is good to half of it. */
  rttMs: number;
}

/**
 * Redis TIME against `localEpochMs()`, `samples` times; the sample with the shortest round trip
 * wins, taking Redis' reading to be from the middle of that round trip. Redis dates stream entries
 * by the same clock TIME reads, so `local + offsetMs` puts a local timestamp on the log's clock.
 */
export async function redisClockOffset(redis: Redis, samples = 25): Promise<ClockOffset> {
  let best: ClockOffset | undefined;
  for (let i = 0; i < samples; i++) {
    const t0 = localEpochMs();
    const [s, us] = await redis.time();
    const t1 = localEpochMs();
    const redisMs = Number(s) * 1000 + Number(us) / 1000;
    if (!best || t1 - t0 < best.rttMs) best = { offsetMs: redisMs - (t0 + t1) / 2, rttMs: t1 - t0 };
  }
  return { offsetMs: round(best!.offsetMs), rttMs: round(best!.rttMs) };
}

/** The ms part of a stream entry id (`<ms>-<seq>`). */
export function streamIdMs(id: string): number {
  return Number(id.slice(0, id.indexOf("-")));
}
