import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from "prom-client";
import type { JobResult } from "../../core/queue/job-catalog.ts";
import type { RuntimeMetrics } from "../runtime/runtime-metrics.ts";
import type { GuardrailTrigger } from "../../core/contracts/guardrails.ts";

/** Seconds a job ran on this worker: from a no-op handler to a long generation (as the control plane's). */
const EXECUTION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];
const STATUSES = ["completed", "failed", "timed_out", "cancelled"] as const;

export interface WorkerMetricsOptions {
  /** The worker's one registry; the caller serves it. */
  registry: Registry;
  endpointId: string;
  /** Also register Node's default process metrics. Default true. */
  defaultMetrics?: boolean;
}

/**
 * One worker process's Prometheus series, as it sees its own jobs and engine: jobs finished by
 * status and how long each ran, jobs in flight, stream chunks written, engine losses and health.
 * Labels: the endpoint id and the job's final status, nothing else (the worker id comes from the
 * scheduler's service discovery file as a target label). A few counter and histogram updates per
 * job, nothing measured on the way.
 */
export class WorkerMetrics implements RuntimeMetrics {
  readonly registry: Registry;
  private readonly jobs: Counter<"endpoint" | "status">;
  private readonly execution: Histogram<"endpoint" | "status">;
  private readonly running: Gauge<"endpoint">;
  private readonly chunks: Counter<"endpoint">;
  private readonly restarts: Counter<"endpoint">;
  private readonly healthy: Gauge<"endpoint">;
  private readonly guardrails: Counter<"endpoint" | "direction" | "rule" | "action">;
  private readonly endpoint: { endpoint: string };

  constructor(options: WorkerMetricsOptions) {
    this.registry = options.registry;
    const registers = [options.registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: options.registry });
    this.endpoint = { endpoint: options.endpointId };
    this.jobs = new Counter({ name: "hearth_worker_jobs_total", help: "Jobs this worker finished, by final status (a job handed back to the queue by a drain is not counted).", labelNames: ["endpoint", "status"], registers });
    this.execution = new Histogram({ name: "hearth_worker_job_execution_seconds", help: "Time each finished job ran on this worker, by final status.", labelNames: ["endpoint", "status"], buckets: EXECUTION_BUCKETS, registers });
    this.running = new Gauge({ name: "hearth_worker_jobs_running", help: "Jobs this worker runs now.", labelNames: ["endpoint"], registers });
    this.chunks = new Counter({ name: "hearth_worker_stream_chunks_total", help: "Stream chunks this worker wrote for its jobs (what /stream reads).", labelNames: ["endpoint"], registers });
    this.restarts = new Counter({ name: "hearth_worker_engine_restarts_total", help: "Times this worker's engine process was lost after it had started (or a restart failed), each followed by a restart after a backoff.", labelNames: ["endpoint"], registers });
    this.healthy = new Gauge({ name: "hearth_worker_engine_healthy", help: "1 while the engine passes its health check (the worker takes jobs), 0 while it fails it or is not started.", labelNames: ["endpoint"], registers });
    this.guardrails = new Counter({ name: "hearth_guardrail_triggers_total", help: "Output guardrail checks of this worker's jobs that found something, by rule (email, phone, card, secret, external, external_error) and action taken (block, redact, flag, allow).", labelNames: ["endpoint", "direction", "rule", "action"], registers });
    // Present from the start: a series that first appears at 1 loses that increase to `increase()`.
    for (const status of STATUSES) this.jobs.inc({ ...this.endpoint, status }, 0);
    this.chunks.inc(this.endpoint, 0);
    this.restarts.inc(this.endpoint, 0);
    this.running.set(this.endpoint, 0);
    this.healthy.set(this.endpoint, 0);
  }

  jobFinished(result: JobResult): void {
    const labels = { ...this.endpoint, status: result.status.toLowerCase() };
    this.jobs.inc(labels);
    this.execution.observe(labels, Math.max(0, result.finishedAt - result.startedAt) / 1000);
    if (result.chunks !== undefined && result.chunks > 0) this.chunks.inc(this.endpoint, result.chunks);
  }

  jobsRunning(n: number): void {
    this.running.set(this.endpoint, n);
  }

  engineHealth(healthy: boolean): void {
    this.healthy.set(this.endpoint, healthy ? 1 : 0);
  }

  guardrailTriggered(endpointId: string, t: GuardrailTrigger): void {
    this.guardrails.inc({ endpoint: endpointId, direction: t.direction, rule: t.rule, action: t.action });
  }

  engineLost(): void {
    this.restarts.inc(this.endpoint);
  }
}
