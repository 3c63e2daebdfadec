import { setTimeout as sleep } from "node:timers/promises";
import type { Redis } from "ioredis";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import type { ControlMessage } from "../../../core/queue/messages.ts";
import { recordCrash, startDelayMs, NO_CRASHES } from "../../../core/policy/restart-backoff.ts";

export interface InvalidationsOptions {
  /** Connection to publish on (a fail-fast one: a publish while Redis is away fails and is retried here). */
  redis: Redis;
  keys: RedisKeys;
  /**
   * How long a broadcast that Redis refused is retried (ms, by `now`). Past it the caches it was
   * meant to clear have expired on their own; set it to the longest of their TTLs. Default 60000.
   */
  retryForMs?: number;
  /** Wait before the first retry (ms), doubled per failure up to `retryMaxDelayMs`. Default 100. */
  retryBaseDelayMs?: number;
  /** Longest wait between retries (ms). Default 5000. */
  retryMaxDelayMs?: number;
  /** Clock of `retryForMs` (ms epoch). Default Date.now. */
  now?: () => number;
  /** Waits between retries; rejects when `signal` aborts (on `close()`). Default: a timer that keeps no process alive. */
  wait?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/**
 * Tells every API replica to drop a cached key or endpoint, on the API channel. A publish that
 * fails (Redis away) is retried in the background until it lands or `retryForMs` passes. Pub/sub
 * still delivers at most once: a replica whose subscriber is reconnecting misses a message that
 * did land, so every cache cleared this way also has a TTL, which bounds how long it stays stale.
 */
export class Invalidations {
  private readonly retryForMs: number;
  private readonly now: () => number;
  private readonly wait: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly closing = new AbortController();

  constructor(private readonly options: InvalidationsOptions) {
    this.retryForMs = options.retryForMs ?? 60_000;
    this.now = options.now ?? Date.now;
    this.wait = options.wait ?? ((ms, signal) => sleep(ms, undefined, { signal, ref: false }));
  }

  /** Resolves true once Redis took the message, false when retrying gave up (or `close()` stopped it). Never rejects. */
  async announce(msg: ControlMessage): Promise<boolean> {
    const since = this.now();
    const payload = JSON.stringify(msg);
    let failures = NO_CRASHES;
    for (;;) {
      if (this.closing.signal.aborted) return false;
      try {
        await this.options.redis.publish(this.options.keys.apiChannel(), payload);
        return true;
      } catch {
        const t = this.now();
        if (t - since >= this.retryForMs) return false;
        // The workers' crash-loop curve serves here too: base · 2^(failures-1), capped.
        failures = recordCrash(failures, t);
        const delay = startDelayMs(failures, t, { baseMs: this.options.retryBaseDelayMs ?? 100, maxMs: this.options.retryMaxDelayMs ?? 5000 });
        const stopped = await this.wait(delay, this.closing.signal).then(() => false, () => true);
        if (stopped) return false;
      }
    }
  }

  /** Stops every retry in progress (their `announce` resolves false). */
  close(): void {
    this.closing.abort();
  }
}
