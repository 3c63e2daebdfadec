import type { WorkerState } from "../../core/contracts/worker-state.ts";

/**
 * The worker's lifecycle as one explicit state machine:
 *
 *   booting ──► idle ⇄ running ──► draining ──► stopped
 *      │          │  ▲    │           ▲
 *      │          ▼  │    ▼           │
 *      └──────► unhealthy ────────────┘
 *
 * `booting` until the engine has started; `idle` with no job in flight, `running` with at least
 * one; `unhealthy` while the engine fails its health check (it takes no jobs); `draining` after
 * SIGTERM or the loss of the parent; `stopped` once everything is handed back and closed.
 * A boot that fails goes straight to `stopped`.
 */
const allowed: Readonly<Record<WorkerState, readonly WorkerState[]>> = {
  booting: ["idle", "unhealthy", "draining", "stopped"],
  idle: ["running", "unhealthy", "draining"],
  running: ["idle", "unhealthy", "draining"],
  unhealthy: ["idle", "running", "draining"],
  draining: ["stopped"],
  stopped: [],
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
  private current: WorkerState = "booting";
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
