import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { LogEntry } from "../../core/log/log-entry.ts";
import { JobWaits } from "./job-waits.ts";
import { EXIT_REASONS, WorkerLives } from "./worker-lives.ts";

/** A ledger row billing wrote: its seconds (negative: given back) and the GPU type it was priced as. */
export interface BilledRow {
  seconds: number;
  gpuType: string;
}

/** Seconds: from a no-op handler to a long generation. */
const EXECUTION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];
/** Seconds to the first token: tens of ms on a warm engine, seconds with a long prompt. */
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];
/** Seconds between tokens. */
const ITL_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5];
/** Tokens per second of one job's generation. */
const TPS_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];
/** Seconds a job waited in its queue: none on a warm endpoint, a cold start's worth from zero, far more behind a backlog. */
const DELAY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/** Seconds of a cold-start phase: a local process in a fraction of a second, a large model's download in many minutes. */
const COLD_START_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800];
/** Seconds one webhook attempt took. */
const ATTEMPT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15];

/**
 * The control plane's Prometheus registry: what it learns from the event log once each entry's
 * records committed (a finished job observed once per process, however many times the API was
 * asked about it), from the ledger rows billing wrote, and from its webhook attempts. Labels:
 * endpoint ids, statuses, phases, states, reasons and outcomes from fixed sets: never free text.
 * Durations come from the log (its entry ids, on Redis' clock, or spans a worker measured
 * itself), never from the clocks of two hosts.
 */
export class ControlMetrics {
  readonly registry = new Registry();
  private readonly execution: Histogram<"endpoint" | "status">;
  private readonly ttft: Histogram<"endpoint">;
  private readonly itl: Histogram<"endpoint">;
  private readonly tps: Histogram<"endpoint">;
  private readonly promptTokens: Counter<"endpoint">;
  private readonly completionTokens: Counter<"endpoint">;
  private readonly attempts: Histogram<"outcome">;
  private readonly delay: Histogram<"endpoint">;
  private readonly coldStart: Histogram<"endpoint" | "phase">;
  private readonly exits: Counter<"endpoint" | "reason">;
  private readonly transitions: Counter<"endpoint" | "state">;
  private readonly billed: Counter<"endpoint" | "gpu_type">;
  private readonly returned: Counter<"endpoint" | "gpu_type">;
  private readonly waits: JobWaits;
  private readonly lives: WorkerLives;
  /** Endpoints whose exit series exist at 0 (a counter that first appears at 1 loses that increase to `increase()`). */
  private readonly exitSeries = new Set<string>();

  /** `maxQueuedJobs`, `maxWorkers`: what is remembered between batches (job-waits.ts, worker-lives.ts). */
  constructor(options: { maxQueuedJobs?: number; maxWorkers?: number } = {}) {
    this.waits = new JobWaits(options.maxQueuedJobs);
    this.lives = new WorkerLives(options.maxWorkers);
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.execution = new Histogram({ name: "hearth_job_execution_seconds", help: "Time a job ran on its worker, by how it ended.", labelNames: ["endpoint", "status"], buckets: EXECUTION_BUCKETS, registers });
    this.ttft = new Histogram({ name: "hearth_llm_ttft_seconds", help: "Time from a job's start on its worker to its first generated token.", labelNames: ["endpoint"], buckets: TTFT_BUCKETS, registers });
    this.itl = new Histogram({ name: "hearth_llm_inter_token_seconds", help: "Mean time between a job's generated tokens after the first, one observation per job.", labelNames: ["endpoint"], buckets: ITL_BUCKETS, registers });
    this.tps = new Histogram({ name: "hearth_llm_tokens_per_second", help: "Completion tokens per second of a job's generation (after its first token).", labelNames: ["endpoint"], buckets: TPS_BUCKETS, registers });
    this.promptTokens = new Counter({ name: "hearth_llm_prompt_tokens_total", help: "Prompt tokens of finished jobs.", labelNames: ["endpoint"], registers });
    this.completionTokens = new Counter({ name: "hearth_llm_completion_tokens_total", help: "Completion tokens of finished jobs.", labelNames: ["endpoint"], registers });
    this.attempts = new Histogram({ name: "hearth_webhook_attempt_seconds", help: "Webhook attempts by outcome (delivered; retry: 5xx, 429, timeout, connection error; stop: other 4xx, redirect, refused address) and how long each took; `_count` counts them.", labelNames: ["outcome"], buckets: ATTEMPT_BUCKETS, registers });
    this.delay = new Histogram({ name: "hearth_job_delay_seconds", help: "Time a job waited in its queue before it started (acceptance, re-queue or retry to start; both on Redis' clock), one observation per start.", labelNames: ["endpoint"], buckets: DELAY_BUCKETS, registers });
    this.coldStart = new Histogram({ name: "hearth_worker_cold_start_seconds", help: "Cold-start phases of workers: provision (requested to process running), boot (running to first ready), weights_fetch (the engine's weights fetch, as the worker measured it), total (requested to first ready).", labelNames: ["endpoint", "phase"], buckets: COLD_START_BUCKETS, registers });
    this.exits = new Counter({ name: "hearth_worker_exits_total", help: "Worker sessions ended, once each, by reason: normal, crash (non-zero exit not asked for), start_failed, unhealthy, lost, other.", labelNames: ["endpoint", "reason"], registers });
    this.transitions = new Counter({ name: "hearth_worker_transitions_total", help: "Worker state changes logged, by the state entered (an exit may be logged twice: by the worker, then confirmed by the scheduler).", labelNames: ["endpoint", "state"], registers });
    this.billed = new Counter({ name: "hearth_billed_seconds_total", help: "Worker seconds charged to the ledger (rows this process wrote; a settlement that gives time back counts in hearth_billed_seconds_returned_total).", labelNames: ["endpoint", "gpu_type"], registers });
    this.returned = new Counter({ name: "hearth_billed_seconds_returned_total", help: "Worker seconds settlements gave back after they had been charged (a lost worker ends at its last heartbeat); billed net = billed - returned.", labelNames: ["endpoint", "gpu_type"], registers });
  }

  /** A committed batch of one endpoint's log: its jobs' waits and runs, its workers' cold starts and exits. */
  observeCommitted(endpoint: string, entries: readonly LogEntry[]): void {
    this.observeJobs(endpoint, entries);
    for (const ms of this.waits.take(endpoint, entries)) this.delay.observe({ endpoint }, ms / 1000);
    const workers = this.lives.take(endpoint, entries);
    if (workers.states.length > 0 && !this.exitSeries.has(endpoint)) {
      this.exitSeries.add(endpoint);
      for (const reason of EXIT_REASONS) this.exits.inc({ endpoint, reason }, 0);
    }
    for (const state of workers.states) this.transitions.inc({ endpoint, state });
    for (const c of workers.coldStarts) this.coldStart.observe({ endpoint, phase: c.phase }, c.ms / 1000);
    for (const reason of workers.exits) this.exits.inc({ endpoint, reason });
  }

  /**
   * Seconds of ledger rows billing inserted (and committed) for the endpoint, each with the GPU type
   * it was priced as (a type of the operator's price table: bounded); negative ones were given back.
   */
  billedSeconds(endpoint: string, rows: readonly BilledRow[]): void {
    for (const { seconds, gpuType } of rows) {
      if (seconds > 0) this.billed.inc({ endpoint, gpu_type: gpuType }, seconds);
      else if (seconds < 0) this.returned.inc({ endpoint, gpu_type: gpuType }, -seconds);
    }
  }

  /** The finished jobs among a committed batch of one endpoint's log. */
  private observeJobs(endpoint: string, entries: readonly LogEntry[]): void {
    for (const e of entries) {
      if (e.kind !== "completed") continue;
      const r = e.result;
      const ranMs = Math.max(0, r.finishedAt - r.startedAt);
      this.execution.observe({ endpoint, status: r.status.toLowerCase() }, ranMs / 1000);
      const g = r.generation;
      if (!g) continue;
      if (g.ttftMs !== undefined) this.ttft.observe({ endpoint }, g.ttftMs / 1000);
      if (g.itlMs !== undefined) this.itl.observe({ endpoint }, g.itlMs / 1000);
      if (g.promptTokens !== undefined) this.promptTokens.inc({ endpoint }, g.promptTokens);
      if (g.completionTokens !== undefined) {
        this.completionTokens.inc({ endpoint }, g.completionTokens);
        const generatingMs = ranMs - (g.ttftMs ?? 0);
        if (g.completionTokens > 1 && generatingMs > 0) this.tps.observe({ endpoint }, (g.completionTokens - 1) / (generatingMs / 1000));
      }
    }
  }

  webhookAttempt(outcome: "delivered" | "retry" | "stop", latencyMs: number): void {
    this.attempts.observe({ outcome }, latencyMs / 1000);
  }
}
