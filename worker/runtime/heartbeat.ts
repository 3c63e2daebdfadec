import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { WorkerHeartbeat, WorkerState } from "../../core/contracts/worker-state.ts";

/** What the heartbeat reads from the runtime at the moment it writes. */
export interface HeartbeatSnapshot {
  state: WorkerState;
  running: number;
  concurrency: number;
  idleSince: number | null;
}

export interface HeartbeatOptions {
  redis: Redis;
  keys: RedisKeys;
  endpointId: string;
  workerId: string;
  /** Period of the unconditional write, ms; the scheduler treats a worker silent for a few periods as gone. */
  intervalMs: number;
  snapshot: () => HeartbeatSnapshot;
  /** State changes within this many ms share one write (`beatSoon`). Default 25. */
  coalesceMs?: number;
  /** A failed write is reported here and retried on the next beat; default logs to stderr. */
  onError?: (err: unknown) => void;
  now?: () => number;
}

/**
 * Keeps `HSET workers:{endpoint} {workerId} <heartbeat JSON>` fresh: on every `beat()` (the runtime
 * calls it on each state change) and every `intervalMs`. Writes go out in call order on one
 * connection, so the hash never shows an older state after a newer one. `stop()` removes the entry.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private soon: NodeJS.Timeout | undefined;
  private readonly onError: (err: unknown) => void;
  private readonly now: () => number;

  constructor(private readonly options: HeartbeatOptions) {
    this.onError = options.onError ?? ((err) => console.error("heartbeat write failed:", err));
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.beat(), this.options.intervalMs);
    this.timer.unref();
  }

  /**
   * Writes the current snapshot shortly, once for all changes until then: a short job's
   * idle → running → idle costs one write instead of two Redis commands on the job's path.
   */
  beatSoon(): void {
    if (this.soon || this.stopped) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.beat();
    }, this.options.coalesceMs ?? 25);
  }

  /** Writes the current snapshot now. Never rejects. */
  async beat(): Promise<void> {
    if (this.stopped) return;
    const { keys, endpointId, workerId } = this.options;
    const s = this.options.snapshot();
    const hb: WorkerHeartbeat = {
      id: workerId,
      endpointId,
      state: s.state,
      running: s.running,
      concurrency: s.concurrency,
      idleSince: s.idleSince,
      at: this.now(),
    };
    try {
      await this.options.redis.hset(keys.workers(endpointId), workerId, JSON.stringify(hb));
    } catch (err) {
      this.onError(err);
    }
  }

  /** Stops beating and removes this worker from the hash. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.soon) clearTimeout(this.soon);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    try {
      await this.options.redis.hdel(this.options.keys.workers(this.options.endpointId), this.options.workerId);
    } catch (err) {
      this.onError(err);
    }
  }
}
