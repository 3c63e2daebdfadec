import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { builtEntryPath } from "../core/build/built-entry.ts";
import { workerEnvironment } from "../core/config/worker-environment.ts";
import type { Log } from "../core/log/process-log.ts";
import type { SchedulableEndpoint } from "./endpoints.ts";
import type { WorkerSecrets } from "./worker-secrets.ts";

export interface WeightsPreloaderOptions {
  /** Built preload entry run with plain `node`. Default: dist/worker/preload-main.js. */
  entry?: string;
  /** Whose allow-listed part the preloader inherits, as a worker does. Default: this process's environment. */
  inheritEnv?: NodeJS.ProcessEnv;
  /** The same extra environment workers get (HEARTH_MODEL_DIRS, HEARTH_MODEL_ALLOWLIST). */
  workerEnv?: Record<string, string>;
  /** Opens the endpoint's model credentials, as for a worker. Default: none (public and operator models only). */
  secrets?: WorkerSecrets;
  /** Preload processes at once on this host; more wait their turn (a starting scheduler sees every endpoint at once). Default 2. */
  maxConcurrent?: number;
  log: Log;
}

/**
 * The scheduler's preload hook: runs `worker/preload-main.ts` (a worker's environment, no Redis,
 * no engine) for an endpoint whose model should be in this host's weights cache before a worker
 * needs it. At most one per endpoint at a time and `maxConcurrent` in all (the rest queue, one
 * entry per endpoint); it is fire-and-forget, a failure is logged, and a
 * worker that starts meanwhile joins its download through the cache's host-wide lock. Only the
 * local provider's host is warmed: a remote provider's hosts would need their own.
 */
export class WeightsPreloader {
  private readonly running = new Set<string>();
  private readonly queued = new Map<string, SchedulableEndpoint>();

  constructor(private readonly opts: WeightsPreloaderOptions) {}

  preload(endpoint: SchedulableEndpoint): void {
    if (endpoint.engine.kind !== "openai" || this.running.has(endpoint.id)) return;
    if (this.running.size >= (this.opts.maxConcurrent ?? 2)) {
      this.queued.set(endpoint.id, endpoint);
      return;
    }
    this.queued.delete(endpoint.id);
    this.run(endpoint);
  }

  private next(): void {
    for (const [id, endpoint] of this.queued) {
      if (this.running.size >= (this.opts.maxConcurrent ?? 2)) return;
      this.queued.delete(id);
      if (!this.running.has(id)) this.run(endpoint);
    }
  }

  private run(endpoint: SchedulableEndpoint): void {
    const { log } = this.opts;
    let env: Record<string, string>;
    let engineJson: string;
    try {
      const opened = this.opts.secrets?.forWorker(endpoint.id, endpoint.engine);
      env = opened?.env ?? {};
      engineJson = JSON.stringify(opened?.engine ?? endpoint.engine);
    } catch (err) {
      log({ level: "warn", msg: "preload skipped", endpointId: endpoint.id, error: (err as Error).message });
      this.next();
      return;
    }
    this.running.add(endpoint.id);
    const child = spawn(process.execPath, [this.opts.entry ?? builtEntryPath("worker/preload-main.ts")], {
      stdio: ["ignore", "inherit", "inherit"],
      env: {
        ...workerEnvironment(this.opts.inheritEnv ?? process.env),
        ...this.opts.workerEnv,
        ...env,
        HEARTH_ENDPOINT_ID: endpoint.id,
        HEARTH_WORKER_ID: `preload-${randomBytes(4).toString("hex")}`,
        HEARTH_ENGINE: engineJson,
      },
    });
    log({ msg: "preload started", endpointId: endpoint.id, pid: child.pid });
    let ended = false;
    const done = (code: number | null, error?: string) => {
      if (ended) return;
      ended = true;
      this.running.delete(endpoint.id);
      log({ level: code === 0 ? "info" : "warn", msg: code === 0 ? "preload finished" : "preload failed", endpointId: endpoint.id, code, ...(error && { error }) });
      this.next();
    };
    child.once("error", (err) => done(null, err.message));
    child.once("exit", (code) => done(code));
  }
}
