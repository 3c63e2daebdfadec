import { describe, expect, it } from "vitest";
import type { LogEntry } from "../../core/log/log-entry.ts";
import { ControlMetrics } from "./control-metrics.ts";

const completed = (id: string, result: Extract<LogEntry, { kind: "completed" }>["result"]): LogEntry => ({ kind: "completed", id, jobId: `j-${id}`, result });

async function value(m: ControlMetrics, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = (await m.registry.getMetricsAsJSON()).flatMap((f) => f.values.map((v) => ({ ...v, name: (v as { metricName?: string }).metricName ?? f.name })));
  return metric.find((v) => v.name === name && Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l))?.value;
}

describe("ControlMetrics", () => {
  it("observes each finished job: run time by status, and an LLM job's TTFT, inter-token time, tokens/s and token counts", async () => {
    const m = new ControlMetrics();
    m.observeJobs("ep1", [
      { kind: "active", id: "1-0", jobId: "j" },
      completed("2-0", { status: "COMPLETED", workerId: "w", startedAt: 1000, finishedAt: 3000, generation: { ttftMs: 200, itlMs: 10, promptTokens: 7, completionTokens: 181 } }),
      completed("3-0", { status: "FAILED", error: "x", workerId: "w", startedAt: 0, finishedAt: 500 }),
    ]);
    expect(await value(m, "hearth_job_execution_seconds_count", { endpoint: "ep1", status: "completed" })).toBe(1);
    expect(await value(m, "hearth_job_execution_seconds_sum", { endpoint: "ep1", status: "completed" })).toBe(2);
    expect(await value(m, "hearth_job_execution_seconds_count", { endpoint: "ep1", status: "failed" })).toBe(1);
    expect(await value(m, "hearth_llm_ttft_seconds_sum", { endpoint: "ep1" })).toBe(0.2);
    expect(await value(m, "hearth_llm_inter_token_seconds_sum", { endpoint: "ep1" })).toBe(0.01);
    // 180 tokens after the first, over the 1.8 s after it.
    expect(await value(m, "hearth_llm_tokens_per_second_sum", { endpoint: "ep1" })).toBe(100);
    expect(await value(m, "hearth_llm_prompt_tokens_total", { endpoint: "ep1" })).toBe(7);
    expect(await value(m, "hearth_llm_completion_tokens_total", { endpoint: "ep1" })).toBe(181);
  });

  it("counts webhook attempts by outcome with their time", async () => {
    const m = new ControlMetrics();
    m.webhookAttempt("delivered", 20);
    m.webhookAttempt("retry", 15_000);
    m.webhookAttempt("retry", 3);
    expect(await value(m, "hearth_webhook_attempt_seconds_count", { outcome: "delivered" })).toBe(1);
    expect(await value(m, "hearth_webhook_attempt_seconds_count", { outcome: "retry" })).toBe(2);
    expect(await value(m, "hearth_webhook_attempt_seconds_sum", { outcome: "retry" })).toBe(15.003);
  });
});
