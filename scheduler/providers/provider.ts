import type { EngineSpec } from "../../core/contracts/endpoint.ts";

/** What to run: one worker of one endpoint. Connection settings belong to the provider, not the spec. */
export interface WorkerSpec {
  /** Chosen by the scheduler; the worker reports under this id (heartbeats, BullMQ worker name). */
  workerId: string;
  endpointId: string;
  engine: EngineSpec;
  /**
   * Extra environment for the worker (e.g. HEARTH_HEARTBEAT_MS), on top of the allow-listed part of the
   * provider's own (core/config/worker-environment.ts). The place for what only this endpoint's worker
   * may see (a tenant's model credentials); the provider's own variables win on conflict.
   */
  env: Record<string, string>;
  /** The endpoint's default execution timeout; a job's policy may override it. */
  executionTimeoutMs: number;
  /**
   * REDIS_URL of this worker: its own Redis user, limited to its endpoint (scheduler/worker-redis-users.ts).
   * Default: the provider's own URL.
   */
  redisUrl?: string;
}

/** A worker as its provider knows it: a process, a pod… */
export interface ProvidedWorker {
  workerId: string;
  endpointId: string;
  /** ms epoch the provider started it. */
  startedAt: number;
  /** `paused`: in the snapshot pool (see `Provider.pause`), its process stopped with its model resident. */
  state: "running" | "paused" | "exited";
  /** While paused: ms epoch it was paused (the pool evicts least recently used first). */
  pausedAt?: number;
  /** While paused: resident memory it keeps (bytes), what the pool's memory budget counts. */
  residentBytes?: number;
  /** Set once exited: the process exit code, or 128 + signal number when a signal ended it. */
  exitCode?: number;
}

export interface PauseOptions {
  /** How long the worker may take to close its queue worker and put its engine to sleep before the pause is given up (ms). */
  timeoutMs: number;
}

/** Why a pause or resume did not happen: the worker is unknown, busy, already in that state, or did not answer in time. */
export type PauseOutcome = { ok: true } | { ok: false; reason: string };

export type ExitListener = (worker: ProvidedWorker) => void;

export interface StopOptions {
  /** How long the worker may drain after the polite stop (SIGTERM) before it is killed (SIGKILL). */
  graceMs: number;
}

/**
 * Turns "run this worker" into a running worker and tells when it is gone. Implementations: local
 * child processes today, Kubernetes pods later; both pass test/provider-conformance.ts.
 */
export interface Provider {
  /** Written to `workers.provider`: "local", "kubernetes"… */
  readonly name: string;
  /** True when `pause` and `resume` can work here (local: a state directory to list paused groups in). Absent: false. */
  readonly pausable?: boolean;
  /** Resolves once the worker is started (not once it is ready: readiness comes from its heartbeat). */
  start(spec: WorkerSpec): Promise<ProvidedWorker>;
  /**
   * Asks the worker to drain and stop (a paused one is thawed to do so); kills it when `graceMs`
   * passes. Resolves once it has exited.
   * Idempotent; an unknown or already exited worker resolves at once.
   */
  stop(workerId: string, options: StopOptions): Promise<void>;
  /**
   * Snapshot pool (FlashBoot), where the provider can: the worker first closes its queue worker (so
   * no job lock can lapse) and puts a sleep-capable engine to sleep, logs `paused`, and only then is
   * it frozen with its model resident (local: SIGSTOP to its whole process group). A worker with a
   * job in flight refuses. Absent: this provider cannot pause, and scale-down stops workers.
   */
  pause?(workerId: string, options: PauseOptions): Promise<PauseOutcome>;
  /** Thaws a paused worker (local: SIGCONT to its group); resolves once it takes jobs again. */
  resume?(workerId: string, options: PauseOptions): Promise<PauseOutcome>;
  /**
   * Finds what a predecessor of this provider left paused on this host (its scheduler died while
   * they were frozen, and a frozen worker cannot notice) and kills it. Returns the workers killed so
   * their sessions can be closed.
   */
  reclaim?(): Promise<Array<Pick<ProvidedWorker, "workerId" | "endpointId">>>;
  /** Workers the provider holds now: started and not yet reported exited (paused ones included). */
  list(): ProvidedWorker[];
  /** Called once per worker when it exits, whoever stopped it; returns an unsubscribe function. */
  onExit(listener: ExitListener): () => void;
  /** Stops every worker (draining, as `stop`), waits for all to exit, and refuses further starts. */
  close(): Promise<void>;
}

/** Thrown by `start` after `close`. */
export class ProviderClosedError extends Error {
  readonly code = "PROVIDER_CLOSED";
  constructor(provider: string) {
    super(`${provider} provider is closed`);
  }
}
