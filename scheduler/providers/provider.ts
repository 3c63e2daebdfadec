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
  state: "running" | "exited";
  /** Set once exited: the process exit code, or 128 + signal number when a signal ended it. */
  exitCode?: number;
}

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
  /** Resolves once the worker is started (not once it is ready: readiness comes from its heartbeat). */
  start(spec: WorkerSpec): Promise<ProvidedWorker>;
  /**
   * Asks the worker to drain and stop; kills it when `graceMs` passes. Resolves once it has exited.
   * Idempotent; an unknown or already exited worker resolves at once.
   */
  stop(workerId: string, options: StopOptions): Promise<void>;
  /** Workers the provider holds now: started and not yet reported exited. */
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
