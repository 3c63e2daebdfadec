import type { WorkerState } from "../../core/contracts/worker-state.ts";

/**
 * The worker's lifecycle as one explicit state machine:
 *
 *   initializing ──► idle ⇄ running ──► draining ──► exited
 *      │              │  ▲    │           ▲
 *      │              ▼  │    ▼           │
 *      └──────────► unhealthy ────────────┘
 *                     idle ⇄ paused ──► draining
 *
 * `initializing` until the engine has started; `idle` with no job in flight, `running` with at
 * least one; `unhealthy` while the engine fails its health check (it takes no jobs); `draining`
 * after SIGTERM or the loss of the parent; `exited` once everything is handed back and closed.
 * A boot that fails goes straight to `exited`. `paused`: its queue worker closed and its engine
 * asleep, about to be frozen by its provider (snapshot pool); thawed, it goes back to `idle`, or
 * drains when it was thawed to be stopped. (The vocabulary's `requested` and `lost` are the
 * scheduler's words for a worker, never the worker's own.)
 */
const allowed: Readonly<Record<WorkerState, readonly WorkerState[]>> = {
  initializing: ["idle", "unhealthy", "draining", "exited"],
  idle: ["running", "unhealthy", "draining", "paused"],
  running: ["idle", "unhealthy", "draining"],
  unhealthy: ["idle", "running", "draining"],
  draining: ["exited"],
  exited: [],
  requested: [],
  paused: ["idle", "draining"],
  lost: [],
};

/** Thrown on a transition the machine does not allow: a bug in the runtime, never a runtime condition. */
export class IllegalTransitionError extends Error {
  readonly code = "ILLEGAL_TRANSITION";
  constructor(
    readonly from: WorkerState,
    readonly to: WorkerState,
  ) {
    super(`illegal worker state transition ${from} → ${to}`);
  }
}

export type StateListener = (to: WorkerState, from: WorkerState) => void;

export class Lifecycle {
  private current: WorkerState = "initializing";
  private readonly listeners: StateListener[] = [];

  get state(): WorkerState {
    return this.current;
  }

  can(to: WorkerState): boolean {
    return allowed[this.current].includes(to);
  }

  /** Moves to `to`, telling every listener; throws `IllegalTransitionError` when not allowed. */
  to(to: WorkerState): void {
    const from = this.current;
    if (!this.can(to)) throw new IllegalTransitionError(from, to);
    this.current = to;
    for (const listener of this.listeners) listener(to, from);
  }

  /** Listeners run synchronously on every transition, in the order they were added. */
  onChange(listener: StateListener): void {
    this.listeners.push(listener);
  }
}
