import type { Redis } from "ioredis";

/*
  Extends the lock only while it is still ours, so a replica whose lock expired (a long GC pause,
  a Redis failover) cannot extend the lock a newer leader took.

    Input:
      KEYS[1] lock key
      ARGV[1] owner id
      ARGV[2] ttl (ms)

    Output:
      1 - extended
      0 - not ours (expired, or held by another owner)
*/
const RENEW_LUA = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`;

/*
  Deletes the lock only while it is still ours, so a leader stepping down never frees a successor's lock.

    Input:
      KEYS[1] lock key
      ARGV[1] owner id

    Output:
      1 - released
      0 - not ours (nothing done)
*/
const RELEASE_LUA = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
`;

type LockRedis = Redis & {
  hearthRenewLock(key: string, owner: string, ttlMs: number): Promise<number>;
  hearthReleaseLock(key: string, owner: string): Promise<number>;
};

export interface LeaderLockOptions {
  redis: Redis;
  key: string;
  /** Unique per replica: what the lock holds. */
  ownerId: string;
  /** Lock lifetime; a crashed leader is replaced within this. Default 10_000. */
  ttlMs?: number;
  /** Called on every change of leadership (true: acquired, false: lost or released). */
  onChange?: (leader: boolean) => void;
  /** Clock; default Date.now. */
  now?: () => number;
}

/**
 * One leader among replicas: `SET key owner NX PX ttl`, renewed every ttl/3 by compare-and-pexpire;
 * a stand-by retries on the same period. Fails closed: a leader that cannot reach Redis counts
 * itself leader only until its last confirmed lease runs out.
 */
export class LeaderLock {
  private readonly redis: LockRedis;
  private readonly ttlMs: number;
  private readonly now: () => number;
  /** ms epoch until which the lease is confirmed ours; 0 when not leader. */
  private leaseUntil = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private cycle: Promise<void> = Promise.resolve();

  constructor(private readonly opts: LeaderLockOptions) {
    this.ttlMs = opts.ttlMs ?? 10_000;
    this.now = opts.now ?? Date.now;
    this.redis = opts.redis as LockRedis;
    if (!("hearthRenewLock" in opts.redis)) {
      opts.redis.defineCommand("hearthRenewLock", { numberOfKeys: 1, lua: RENEW_LUA });
      opts.redis.defineCommand("hearthReleaseLock", { numberOfKeys: 1, lua: RELEASE_LUA });
    }
  }

  get isLeader(): boolean {
    return this.leaseUntil > this.now();
  }

  /** Tries once now, then keeps acquiring or renewing every ttl/3 until `release()`. */
  async start(): Promise<void> {
    this.stopped = false;
    await this.runCycle();
  }

  /** Stops renewing and frees the lock if it is still ours. */
  async release(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.cycle;
    const wasLeader = this.leaseUntil > 0;
    this.leaseUntil = 0;
    try {
      await this.redis.hearthReleaseLock(this.opts.key, this.opts.ownerId);
    } finally {
      if (wasLeader) this.opts.onChange?.(false);
    }
  }

  private runCycle(): Promise<void> {
    this.cycle = this.step().finally(() => {
      if (!this.stopped) this.timer = setTimeout(() => void this.runCycle(), Math.max(1, Math.floor(this.ttlMs / 3)));
    });
    return this.cycle;
  }

  private async step(): Promise<void> {
    const wasLeader = this.isLeader;
    const askedAt = this.now();
    try {
      const ok = wasLeader
        ? (await this.redis.hearthRenewLock(this.opts.key, this.opts.ownerId, this.ttlMs)) === 1
        : (await this.redis.set(this.opts.key, this.opts.ownerId, "PX", this.ttlMs, "NX")) === "OK";
      // The lease counts from before the request: the key may have been set just after we asked.
      this.leaseUntil = ok ? askedAt + this.ttlMs : 0;
    } catch {
      // Unreachable Redis: keep the confirmed lease, which `isLeader` lets run out on its own.
    }
    if (this.stopped) return;
    const leader = this.isLeader;
    if (leader !== wasLeader) this.opts.onChange?.(leader);
  }
}
