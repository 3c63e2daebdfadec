import { parseStreamId, type LogEntry, type WorkerPayload } from "../../core/log/log-entry.ts";
import type { WorkerState } from "../../core/contracts/worker-state.ts";
import { BoundedMap } from "./bounded-map.ts";

/** Workers remembered at once, all endpoints together, by default (live ones and recent exits). */
export const DEFAULT_MAX_WORKERS = 10_000;

/**
 * Phases of a cold start: `provision` from the scheduler's request to the worker's process running
 * (`requested` → `initializing`), `boot` from there to ready (→ first `idle` or `running`),
 * `weights_fetch` the part of the boot its engine spent fetching weights (the worker's own report),
 * `total` from the request to ready.
 */
export const COLD_START_PHASES = ["provision", "boot", "weights_fetch", "total"] as const;
export type ColdStartPhase = (typeof COLD_START_PHASES)[number];

/**
 * Why a worker's session ended, as a small fixed set (the log's reasons are free text):
 * `normal` a worker asked to stop, or whose process ended with code 0 or by its own drain;
 * `crash` its process ended with another code without being asked to; `start_failed` its provider
 * could not start it or its engine failed to start; `unhealthy` it ended while its engine failed its
 * health check; `lost` it went silent; `other` anything else (an exit with no code and no drain).
 */
export const EXIT_REASONS = ["normal", "crash", "start_failed", "unhealthy", "lost", "other"] as const;
export type ExitReason = (typeof EXIT_REASONS)[number];

/**
 * The reasons' openings that say a worker never got to serve: the scheduler's fleet logs
 * `start failed: …` when its provider refused, the worker runtime `engine failed to start: …`.
 */
const START_FAILED = /^(start failed|engine failed to start)\b/;

/** What is known of one worker from the entries read so far. */
interface Life {
  requestedMs?: number;
  initializingMs?: number;
  /** Seen `idle` or `running`: its cold start is over (a later resume is not one). */
  ready: boolean;
  /** Asked to stop (`draining` logged): a non-zero exit after it is the stop, not a crash. */
  draining: boolean;
  /** Its last state was `unhealthy`. */
  unhealthy: boolean;
  /** Its exit was counted: a second `exited` (the scheduler confirming the worker's own) is not. */
  ended: boolean;
}

export interface WorkerObservations {
  coldStarts: { phase: ColdStartPhase; ms: number }[];
  exits: ExitReason[];
  states: WorkerState[];
}

/** Classifies a final entry (`exited` or `lost`) from the worker's life before it. */
export function exitReason(p: WorkerPayload, life: Pick<Life, "draining" | "unhealthy">): ExitReason {
  if (p.state === "lost") return "lost";
  if (START_FAILED.test(p.reason ?? "")) return "start_failed";
  if (life.unhealthy) return "unhealthy";
  if (p.exitCode !== undefined && p.exitCode !== 0 && !life.draining) return "crash";
  if (life.draining || p.exitCode === 0 || p.by === "worker") return "normal";
  return "other";
}

/**
 * Cold-start phases and exits from an endpoint's worker entries, dated by their ids (Redis' clock;
 * `weights_fetch` is the worker's own measured span). A worker's entries come in many batches, so
 * what is known of each worker is remembered, at most `maxWorkers` of them (the longest unchanged
 * forgotten past that). A phase whose start this process never read (logged before it started) is
 * not observed; an exit is counted once per worker, at its first final entry: a control plane that
 * restarts between the worker's own `exited` and the scheduler's may count that exit twice.
 */
export class WorkerLives {
  private readonly lives: BoundedMap<string, Life>;

  constructor(maxWorkers = DEFAULT_MAX_WORKERS) {
    this.lives = new BoundedMap(maxWorkers);
  }

  get remembered(): number {
    return this.lives.size;
  }

  take(endpointId: string, entries: readonly LogEntry[]): WorkerObservations {
    const out: WorkerObservations = { coldStarts: [], exits: [], states: [] };
    for (const e of entries) {
      if (e.kind !== "worker") continue;
      const p = e.p;
      const ms = parseStreamId(e.id).ms;
      const key = `${endpointId}\n${p.workerId}`;
      const life: Life = this.lives.get(key) ?? { ready: false, draining: false, unhealthy: false, ended: false };
      out.states.push(p.state);
      if (p.weightsFetchMs !== undefined) out.coldStarts.push({ phase: "weights_fetch", ms: p.weightsFetchMs });
      if (life.ended) continue;
      switch (p.state) {
        case "requested":
          life.requestedMs = ms;
          break;
        case "initializing":
          if (life.ready || life.initializingMs !== undefined) break;
          life.initializingMs = ms;
          if (life.requestedMs !== undefined) out.coldStarts.push({ phase: "provision", ms: Math.max(0, ms - life.requestedMs) });
          break;
        case "idle":
        case "running":
          life.unhealthy = false;
          if (life.ready) break;
          life.ready = true;
          if (life.initializingMs !== undefined) out.coldStarts.push({ phase: "boot", ms: Math.max(0, ms - life.initializingMs) });
          if (life.requestedMs !== undefined) out.coldStarts.push({ phase: "total", ms: Math.max(0, ms - life.requestedMs) });
          break;
        case "unhealthy":
          life.unhealthy = true;
          break;
        case "draining":
          life.draining = true;
          break;
        case "exited":
        case "lost":
          out.exits.push(exitReason(p, life));
          life.ended = true;
          break;
        case "paused":
          break;
      }
      this.lives.set(key, life);
    }
    return out;
  }
}
