import { describe, expect, it } from "vitest";
import type { LogEntry } from "../../core/log/log-entry.ts";
import { ControlMetrics } from "./control-metrics.ts";

const accepted = (id: string, jobId: string): LogEntry => ({
  kind: "accepted",
  id,
  p: { jobId, tenantId: "t", sync: false, lowPriority: false, retries: 0, submittedAt: 0, executionTimeoutMs: 600_000 },
});
const worker = (id: string, p: Extract<LogEntry, { kind: "worker" }>["p"]): LogEntry => ({ kind: "worker", id, p });
const completed = (id: string, result: Extract<LogEntry, { kind: "completed" }>["result"]): LogEntry => ({ kind: "completed", id, jobId: `j-${id}`, result });

async function value(m: ControlMetrics, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const metric = (await m.registry.getMetricsAsJSON()).flatMap((f) => f.values.map((v) => ({ ...v, name: (v as { metricName?: string }).metricName ?? f.name })));
  return metric.find((v) => v.name === name && Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l))?.value;
}

describe("ControlMetrics", () => {
  it("observes each finished job: run time by status, and an LLM job's TTFT, inter-token time, tokens/s and token counts", async () => {
    const m = new ControlMetrics();
    m.observeCommitted("ep1", [
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

  it("observes each job's queue wait from its entries' ids, across batches: acceptance, re-queue or retry to start", async () => {
    const m = new ControlMetrics();
    m.observeCommitted("ep1", [accepted("1000-0", "j1"), accepted("1500-0", "j2"), { kind: "added", id: "1600-0", jobId: "j3" }]);
    m.observeCommitted("ep1", [
      { kind: "active", id: "1250-0", jobId: "j1" }, // 0.25 s
      { kind: "removed", id: "2000-0", jobId: "j2" }, // cancelled while queued: no wait observed, and forgotten
      { kind: "active", id: "2600-3", jobId: "j3" }, // 1 s
      { kind: "active", id: "2700-0", jobId: "j4" }, // queued before this process read the log: not observed
    ]);
    m.observeCommitted("ep1", [
      { kind: "requeued", id: "3000-0", jobId: "j1" },
      { kind: "active", id: "3500-0", jobId: "j1" }, // 0.5 s
      { kind: "active", id: "3600-0", jobId: "j2" }, // its queueing was closed by the removal
      { kind: "retried", id: "5000-0", p: { jobId: "j3", retries: 1 } },
      { kind: "active", id: "5100-0", jobId: "j3" }, // 0.1 s
    ]);
    // The same job id on another endpoint is another job.
    m.observeCommitted("ep2", [{ kind: "active", id: "6000-0", jobId: "j1" }]);
    expect(await value(m, "hearth_job_delay_seconds_count", { endpoint: "ep1" })).toBe(4);
    expect(await value(m, "hearth_job_delay_seconds_sum", { endpoint: "ep1" })).toBeCloseTo(1.85, 9);
    expect(await value(m, "hearth_job_delay_seconds_bucket", { endpoint: "ep1", le: "0.25" })).toBe(2);
    expect(await value(m, "hearth_job_delay_seconds_bucket", { endpoint: "ep1", le: "0.5" })).toBe(3);
    expect(await value(m, "hearth_job_delay_seconds_count", { endpoint: "ep2" })).toBeUndefined();
  });

  it("remembers at most maxQueuedJobs waiting jobs: the oldest is forgotten, not observed wrongly", async () => {
    const m = new ControlMetrics({ maxQueuedJobs: 2 });
    m.observeCommitted("ep1", [accepted("1000-0", "j1"), accepted("2000-0", "j2"), accepted("3000-0", "j3")]);
    m.observeCommitted("ep1", ["j1", "j2", "j3"].map((jobId, i) => ({ kind: "active", id: `4000-${i}`, jobId }) as LogEntry));
    expect(await value(m, "hearth_job_delay_seconds_count", { endpoint: "ep1" })).toBe(2);
    expect(await value(m, "hearth_job_delay_seconds_sum", { endpoint: "ep1" })).toBe(3);
  });

  it("observes cold-start phases from worker transitions, and counts each exit once by a fixed reason", async () => {
    const m = new ControlMetrics();
    m.observeCommitted("ep1", [
      worker("10000-0", { workerId: "w1", state: "requested", tenantId: "t", provider: "local", gpuType: "cpu" }),
      worker("30000-0", { workerId: "w2", state: "requested" }),
      worker("40000-0", { workerId: "w3", state: "initializing" }), // its request was logged before this process read the log
      worker("50000-0", { workerId: "w5", state: "requested" }),
      worker("60000-0", { workerId: "w6", state: "idle" }),
    ]);
    m.observeCommitted("ep1", [
      worker("12000-0", { workerId: "w1", state: "initializing" }), // provision 2 s
      worker("31000-0", { workerId: "w2", state: "exited", by: "scheduler", reason: "start failed: spawn ENOENT" }),
      worker("40500-0", { workerId: "w3", state: "idle" }), // boot 0.5 s
      worker("50100-0", { workerId: "w5", state: "initializing" }), // provision 0.1 s
      worker("60500-0", { workerId: "w6", state: "unhealthy" }),
    ]);
    m.observeCommitted("ep1", [
      worker("15000-0", { workerId: "w1", state: "idle", weightsFetchMs: 1500 }), // boot 3 s, total 5 s, weights 1.5 s
      worker("16000-0", { workerId: "w1", state: "running" }),
      worker("17000-0", { workerId: "w1", state: "idle" }),
      worker("20000-0", { workerId: "w1", state: "draining", reason: "idle timeout" }),
      worker("21000-0", { workerId: "w1", state: "exited", by: "worker", reason: "idle timeout" }),
      worker("21500-0", { workerId: "w1", state: "exited", by: "scheduler", reason: "idle timeout", exitCode: 0 }),
      worker("41000-0", { workerId: "w3", state: "exited", by: "scheduler", reason: "process ended without being asked to stop", exitCode: 1 }),
      worker("51000-0", { workerId: "w5", state: "exited", by: "worker", reason: "engine failed to start: model not found" }),
      worker("51100-0", { workerId: "w5", state: "exited", by: "scheduler", reason: "process ended without being asked to stop", exitCode: 1 }),
      worker("61000-0", { workerId: "w6", state: "exited", by: "scheduler", reason: "process ended without being asked to stop", exitCode: 1 }),
      worker("70000-0", { workerId: "w7", state: "lost", reason: "heartbeat stopped", at: 69000 }),
    ]);
    const phase = (p: string, suffix: "count" | "sum") => value(m, `hearth_worker_cold_start_seconds_${suffix}`, { endpoint: "ep1", phase: p });
    expect([await phase("provision", "count"), await phase("provision", "sum")]).toEqual([2, 2.1]);
    expect([await phase("boot", "count"), await phase("boot", "sum")]).toEqual([2, 3.5]);
    expect([await phase("total", "count"), await phase("total", "sum")]).toEqual([1, 5]);
    expect([await phase("weights_fetch", "count"), await phase("weights_fetch", "sum")]).toEqual([1, 1.5]);
    const exits = async (reason: string) => value(m, "hearth_worker_exits_total", { endpoint: "ep1", reason });
    expect({ normal: await exits("normal"), crash: await exits("crash"), start_failed: await exits("start_failed"), unhealthy: await exits("unhealthy"), lost: await exits("lost"), other: await exits("other") })
      .toEqual({ normal: 1, crash: 1, start_failed: 2, unhealthy: 1, lost: 1, other: 0 });
    // Every worker entry by the state it logged: both of a worker's exits among them.
    expect(await value(m, "hearth_worker_transitions_total", { endpoint: "ep1", state: "exited" })).toBe(7);
    expect(await value(m, "hearth_worker_transitions_total", { endpoint: "ep1", state: "idle" })).toBe(4);
  });

  it("counts billed seconds as written to the ledger; a settlement's negative seconds as returned", async () => {
    const m = new ControlMetrics();
    const rows = (gpuType: string, ...seconds: number[]) => seconds.map((s) => ({ seconds: s, gpuType }));
    m.billedSeconds("ep1", [...rows("cpu", 60, 60, 12, -5, 0), ...rows("NVIDIA A100 80GB PCIe", 7)]);
    m.billedSeconds("ep2", rows("cpu", 3));
    expect(await value(m, "hearth_billed_seconds_total", { endpoint: "ep1", gpu_type: "cpu" })).toBe(132);
    expect(await value(m, "hearth_billed_seconds_total", { endpoint: "ep1", gpu_type: "NVIDIA A100 80GB PCIe" })).toBe(7);
    expect(await value(m, "hearth_billed_seconds_returned_total", { endpoint: "ep1", gpu_type: "cpu" })).toBe(5);
    expect(await value(m, "hearth_billed_seconds_total", { endpoint: "ep2", gpu_type: "cpu" })).toBe(3);
  });
});
