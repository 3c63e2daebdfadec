import type { Redis } from "ioredis";
import { z } from "zod";
import type { BucketSpec } from "../policy/rate-buckets.ts";

/*
 * The two Redis operations of rate and token limits, one script each, mirroring
 * core/policy/rate-buckets.ts (levelAt, takeAll, adjust) operation for operation: the unit tests
 * check both give the same numbers. Each bucket is a hash {l: level in scaled units, t: ms on
 * Redis' clock}; a missing bucket is full. Time is Redis' TIME, never a host's: every API replica
 * shares one clock.
 */

const LEVEL_AT_LUA = `
local function levelAt(cap, amount, period, l, at, now)
  local full = cap * period
  if not l then return full end
  local elapsed = now - at
  if elapsed < 0 then elapsed = 0 end
  local room = full - l
  if room <= 0 then return l end
  if elapsed >= math.ceil(room / amount) then return full end
  return l + elapsed * amount
end
local function msUntil(amount, level, target)
  if level >= target then return 0 end
  return math.ceil((target - level) / amount)
end
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/**
 * --[[ Takes from every bucket at once, all or none (rate-buckets.ts `takeAll`).
 *   KEYS[1..n]  the buckets (hashes l, t)
 *   KEYS[n+1]   the token hold to record (a string key) when ARGV[2] is not ""
 *   ARGV[1]     n
 *   ARGV[2]     the hold's JSON (what the settlement gives back or charges), "" for none
 *   ARGV[3]     the hold's TTL in seconds
 *   ARGV[4 + 4(i-1) .. 7 + 4(i-1)]  bucket i: capacity, amount, periodMs, cost (units)
 *   Returns { allowed 1|0, refusedBy (0-based; -1 when allowed), now ms,
 *             then per bucket: level (scaled units), retryAfterMs, resetMs }
 *   Buckets expire once they would be full again (a missing bucket is a full one).
 * ]]
 */
const TAKE_LUA = `${LEVEL_AT_LUA}
local n = tonumber(ARGV[1])
local levels, specs = {}, {}
local refused = -1
for i = 1, n do
  local b = 4 + (i - 1) * 4
  local cap, amount, period, cost = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  specs[i] = { cap, amount, period, cost * period }
  local s = redis.call("HMGET", KEYS[i], "l", "t")
  local l = tonumber(s[1])
  levels[i] = levelAt(cap, amount, period, l, tonumber(s[2]) or now, now)
  if refused == -1 and levels[i] < specs[i][4] then refused = i - 1 end
end
local out = { refused == -1 and 1 or 0, refused, now }
for i = 1, n do
  local cap, amount, period, need = specs[i][1], specs[i][2], specs[i][3], specs[i][4]
  local full = cap * period
  local level = levels[i]
  local retry = 0
  if refused == -1 then
    level = level - need
    redis.call("HSET", KEYS[i], "l", level, "t", now)
    redis.call("PEXPIRE", KEYS[i], msUntil(amount, level, full) + 1000)
  else
    local want = need
    if want > full then want = full end
    retry = msUntil(amount, level, want)
  end
  out[#out + 1] = level
  out[#out + 1] = retry
  out[#out + 1] = msUntil(amount, level, full)
end
if refused == -1 and ARGV[2] ~= "" then
  redis.call("SET", KEYS[n + 1], ARGV[2], "EX", tonumber(ARGV[3]))
end
return out
`;

/**
 * --[[ Settles a token hold once (rate-buckets.ts `adjust` per bucket): the job's real tokens
 *   against what was held. Idempotent: the hold is deleted in the same script, so a replayed
 *   settlement finds nothing and changes nothing.
 *   KEYS[1]     the hold
 *   KEYS[2..]   its buckets (as the hold names them)
 *   ARGV[1]     tokens to add to each bucket's use (negative: given back)
 *   ARGV[2 + 3(i-1) .. 4 + 3(i-1)]  bucket i: capacity, amount, periodMs
 *   Returns -1 when the hold is gone (settled already, expired), else { now ms, level per bucket }
 * ]]
 */
const SETTLE_LUA = `${LEVEL_AT_LUA}
if redis.call("DEL", KEYS[1]) == 0 then return -1 end
local delta = tonumber(ARGV[1])
local out = { now }
for i = 2, #KEYS do
  local b = 2 + (i - 2) * 3
  local cap, amount, period = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local s = redis.call("HMGET", KEYS[i], "l", "t")
  local full = cap * period
  local level = levelAt(cap, amount, period, tonumber(s[1]), tonumber(s[2]) or now, now) - delta * period
  if level > full then level = full end
  redis.call("HSET", KEYS[i], "l", level, "t", now)
  redis.call("PEXPIRE", KEYS[i], msUntil(amount, level, full) + 1000)
  out[#out + 1] = level
end
return out
`;

type RateRedis = Redis & {
  hearthRateTake(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
  hearthRateSettle(numKeys: number, ...args: (string | number)[]): Promise<number | number[]>;
};

function withScripts(redis: Redis): RateRedis {
  if (!("hearthRateTake" in redis)) {
    redis.defineCommand("hearthRateTake", { lua: TAKE_LUA });
    redis.defineCommand("hearthRateSettle", { lua: SETTLE_LUA });
  }
  return redis as RateRedis;
}

export interface TakeBucket {
  key: string;
  spec: BucketSpec;
  cost: number;
}

export interface TakeReply {
  allowed: boolean;
  refusedBy: number;
  now: number;
  buckets: { level: number; retryAfterMs: number; resetMs: number }[];
}

const takeReply = z.array(z.number().int());

/** One `takeAll` on Redis; `hold` (key, JSON, TTL s) is recorded in the same script when admitted. */
export async function takeBuckets(redis: Redis, buckets: readonly TakeBucket[], hold?: { key: string; json: string; ttlSeconds: number }): Promise<TakeReply> {
  const keys = buckets.map((b) => b.key);
  if (hold) keys.push(hold.key);
  const args: (string | number)[] = [buckets.length, hold?.json ?? "", hold?.ttlSeconds ?? 0];
  for (const b of buckets) args.push(b.spec.capacity, b.spec.amount, b.spec.periodMs, b.cost);
  const r = takeReply.parse(await withScripts(redis).hearthRateTake(keys.length, ...keys, ...args));
  const out: TakeReply = { allowed: r[0] === 1, refusedBy: r[1]!, now: r[2]!, buckets: [] };
  for (let i = 0; i < buckets.length; i++) out.buckets.push({ level: r[3 + i * 3]!, retryAfterMs: r[4 + i * 3]!, resetMs: r[5 + i * 3]! });
  return out;
}

/** What a token hold records: the tokens held and the buckets they were taken from. */
export const tokenHold = z.object({
  tokens: z.number().int().min(0),
  buckets: z.array(z.object({ key: z.string().min(1), capacity: z.number().int().min(1), amount: z.number().int().min(1), periodMs: z.number().int().min(1) })).max(8),
});
export type TokenHold = z.infer<typeof tokenHold>;

/**
 * Settles the hold at `holdKey` with the job's real token count (undefined: the engine gave none,
 * the estimate stands and the hold is only dropped). Returns false when there was nothing to settle.
 */
export async function settleHold(redis: Redis, holdKey: string, realTokens: number | undefined): Promise<boolean> {
  const raw = await redis.get(holdKey);
  if (raw === null) return false;
  let hold: TokenHold;
  try {
    hold = tokenHold.parse(JSON.parse(raw));
  } catch {
    await redis.del(holdKey);
    return false;
  }
  const delta = realTokens === undefined ? 0 : realTokens - hold.tokens;
  const args: (string | number)[] = [delta];
  for (const b of hold.buckets) args.push(b.capacity, b.amount, b.periodMs);
  const r = await withScripts(redis).hearthRateSettle(1 + hold.buckets.length, holdKey, ...hold.buckets.map((b) => b.key), ...args);
  return r !== -1;
}
