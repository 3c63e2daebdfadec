import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { WorkerHeartbeat, WorkerState } from "../../core/contracts/worker-state.ts";
import type { WorkerPayload } from "../../core/log/log-entry.ts";
import { WorkerPresence } from "../../core/log/worker-presence-scripts.ts";

/** What the heartbeat reads from the runtime at the moment it writes. */
export interface HeartbeatSnapshot {
  state: WorkerState;
  running: number;
  concurrency: number;
  idleSince: number | null;
  /** While booting: its phase and progress (a queued job's `waitReason: starting`). */
  phase?: WorkerHeartbeat["phase"];
  progress?: WorkerHeartbeat["progress"];
  /** HEARTH_SPEC_HASH: the engine spec it runs. */
  specHash?: string;
}

/** Fields a worker reports once, on a transition's log entry (see `attachToNextTransition`). */
export type TransitionReport = Pick<WorkerPayload, "weightsFetchMs" | "coldStart">;

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
  /** The loopback port this worker serves `/metrics` on, put in every beat (the scheduler lists it for Prometheus). Default: none. */
  metricsPort?: number;
  /** A failed write is reported here and retried on the next beat; default logs to stderr. */
  onError?: (err: unknown) => void;
  now?: () => number;
}

/**
 * Keeps `HSET workers:{endpoint} {workerId} <heartbeat JSON>` fresh: on every `beat()` (the runtime
 * calls it on each state change) and every `intervalMs`. Each write also dates the beat on Redis'
 * clock (what a `lost` worker's session ends at) and, when the state changed since the last one
 * logged, appends the transition to the endpoint's log in the same script. Writes go out in call
 * order on one connection, so the hash never shows an older state after a newer one. `stop()`
 * removes the entry and logs the worker's exit.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private soon: NodeJS.Timeout | undefined;
  private logged: WorkerState | undefined;
  private report: TransitionReport | undefined;
  private readonly presence: WorkerPresence;
  private metricsPort: number | undefined;
  private readonly onError: (err: unknown) => void;
  private readonly now: () => number;

  constructor(private readonly options: HeartbeatOptions) {
    this.presence = new WorkerPresence(options.redis, options.keys);
    this.onError = options.onError ?? ((err) => console.error("heartbeat write failed:", err));
    this.now = options.now ?? Date.now;
    this.metricsPort = options.metricsPort;
  }

  /** The worker's `/metrics` port, known after it started beating: in every beat from the next one. */
  setMetricsPort(port: number): void {
    this.metricsPort = port;
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.beat(), this.options.intervalMs);
    this.timer.unref();
  }

  /**
   * Writes the current snapshot shortly, once for all changes until then: a short job's
   * idle → running → idle costs one write instead of two Redis commands on the job's path (and the
   * log sees the state the worker settled in, not every flip).
   */
  beatSoon(): void {
    if (this.soon || this.stopped) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.beat();
    }, this.options.coalesceMs ?? 25);
  }

  /**
   * Adds `report` to the next transition this heartbeat logs, and to that one only (a later call
   * before it adds to the same report). A write that fails keeps it for the next transition.
   */
  attachToNextTransition(report: TransitionReport): void {
    const coldStart = this.report?.coldStart || report.coldStart ? { ...this.report?.coldStart, ...report.coldStart } : undefined;
    this.report = { ...this.report, ...report, ...(coldStart && { coldStart }) };
  }

  /** Writes the current snapshot now. Never rejects. */
  async beat(): Promise<void> {
    if (this.stopped) return;
    const { endpointId, workerId } = this.options;
    const s = this.options.snapshot();
    const hb: WorkerHeartbeat = {
      id: workerId,
      endpointId,
      state: s.state,
      running: s.running,
      concurrency: s.concurrency,
      idleSince: s.idleSince,
      at: this.now(),
      pid: process.pid,
      ...(this.metricsPort !== undefined && { metricsPort: this.metricsPort }),
      ...(s.phase !== undefined && { phase: s.phase }),
      ...(s.progress !== undefined && { progress: s.progress }),
      ...(s.specHash !== undefined && { specHash: s.specHash }),
    };
    const entry: WorkerPayload | undefined = s.state === this.logged ? undefined : { workerId, state: s.state, ...this.report };
    // Taken now, not after the write: a beat started while this one is in flight must not log it twice.
    const report = entry && this.report;
    const loggedBefore = this.logged;
    if (entry) {
      this.report = undefined;
      this.logged = s.state;
    }
    try {
      await this.presence.beat(endpointId, workerId, JSON.stringify(hb), entry);
    } catch (err) {
      if (report) this.report = { ...report, ...this.report };
      // Not logged after all: the next beat logs it, unless a later state was logged meanwhile.
      if (entry && this.logged === s.state) this.logged = loggedBefore;
      this.onError(err);
    }
  }

  /** Stops beating, removes this worker from the hash and logs it `exited` with `reason`. */
  async stop(reason: string): Promise<void> {
    this.stopped = true;
    if (this.soon) clearTimeout(this.soon);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    try {
      // A cold-start phase still waiting for a transition (a first job that ended while draining) goes with the exit.
      const coldStart = this.report?.coldStart;
      await this.presence.exited(this.options.endpointId, this.options.workerId, { reason, by: "worker", ...(coldStart && { coldStart }) });
    } catch (err) {
      this.onError(err);
    }
  }
}
