import type { Worker } from "bullmq";
import type { Engine } from "../engines/engine.ts";
import type { Lifecycle } from "./lifecycle.ts";
import type { RuntimeMetrics } from "./runtime-metrics.ts";

export interface EngineHealthCheckOptions {
  engine: Engine;
  lifecycle: Lifecycle;
  /** Period of the check, ms (the heartbeat's). */
  intervalMs: number;
  /** The queue worker taking jobs now (a resumed worker has a fresh one); none while booting. */
  worker: () => Worker | undefined;
  /** Jobs in flight now. */
  running: () => number;
  /** The worker's metrics, once attached. */
  metrics: () => RuntimeMetrics | undefined;
  onError: (err: unknown, context: string) => void;
}

/** Checks the engine's health every `intervalMs` while the worker takes jobs. */
export class EngineHealthCheck {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: EngineHealthCheckOptions) {}

  /** Checks from now on (again, after a pause). */
  start(): void {
    clearInterval(this.timer);
    this.timer = setInterval(() => void this.check(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * An engine failing its health check takes no new jobs (running ones go on) until it recovers.
   * Pausing does not interrupt a fetch already blocked in Redis, so one more job may still arrive.
   */
  private async check(): Promise<void> {
    const { lifecycle, onError } = this.options;
    const worker = this.options.worker();
    if (!worker) return;
    const healthy = await this.options.engine.health().catch(() => false);
    this.options.metrics()?.engineHealth(healthy);
    const state = lifecycle.state;
    if (!healthy && (state === "idle" || state === "running")) {
      lifecycle.to("unhealthy");
      await worker.pause(true).catch((err) => onError(err, "pause"));
    } else if (healthy && state === "unhealthy") {
      lifecycle.to(this.options.running() > 0 ? "running" : "idle");
      await worker.resume().catch((err) => onError(err, "resume"));
    }
  }
}
