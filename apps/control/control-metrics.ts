import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { LogEntry } from "../../core/log/log-entry.ts";

/** Seconds: from a no-op handler to a long generation. */
const EXECUTION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900];
/** Seconds to the first token: tens of ms on a warm engine, seconds with a long prompt. */
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30];
/** Seconds between tokens. */
const ITL_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5];
/** Tokens per second of one job's generation. */
const TPS_BUCKETS = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];
/** Seconds one webhook attempt took. */
const ATTEMPT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15];

/**
 * The control plane's Prometheus registry: what it learns from the event log once each entry's
 * records committed (a finished job observed once per process, however many times the API was
 * asked about it) and from its webhook attempts. Labels: endpoint ids, statuses, outcomes.
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

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.execution = new Histogram({ name: "hearth_job_execution_seconds", help: "Time a job ran on its worker, by how it ended.", labelNames: ["endpoint", "status"], buckets: EXECUTION_BUCKETS, registers });
    this.ttft = new Histogram({ name: "hearth_llm_ttft_seconds", help: "Time from a job's start on its worker to its first generated token.", labelNames: ["endpoint"], buckets: TTFT_BUCKETS, registers });
    this.itl = new Histogram({ name: "hearth_llm_inter_token_seconds", help: "Mean time between a job's generated tokens after the first, one observation per job.", labelNames: ["endpoint"], buckets: ITL_BUCKETS, registers });
    this.tps = new Histogram({ name: "hearth_llm_tokens_per_second", help: "Completion tokens per second of a job's generation (after its first token).", labelNames: ["endpoint"], buckets: TPS_BUCKETS, registers });
    this.promptTokens = new Counter({ name: "hearth_llm_prompt_tokens_total", help: "Prompt tokens of finished jobs.", labelNames: ["endpoint"], registers });
    this.completionTokens = new Counter({ name: "hearth_llm_completion_tokens_total", help: "Completion tokens of finished jobs.", labelNames: ["endpoint"], registers });
    this.attempts = new Histogram({ name: "hearth_webhook_attempt_seconds", help: "Webhook attempts by outcome (delivered; retry: 5xx, 429, timeout, connection error; stop: other 4xx, redirect, refused address) and how long each took; `_count` counts them.", labelNames: ["outcome"], buckets: ATTEMPT_BUCKETS, registers });
  }

  /** The finished jobs among a committed batch of one endpoint's log. */
  observeJobs(endpoint: string, entries: readonly LogEntry[]): void {
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
