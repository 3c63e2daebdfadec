import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { parsePrometheusText, valueOf } from "../../test/support/prometheus-text.ts";
import { WorkerMetrics } from "./worker-metrics.ts";

const scrape = async (m: WorkerMetrics) => parsePrometheusText(await m.registry.metrics()).samples;

describe("WorkerMetrics", () => {
  it("counts each finished job once by status with its run time, and its stream chunks", async () => {
    const m = new WorkerMetrics({ registry: new Registry(), endpointId: "ep1", defaultMetrics: false });
    let s = await scrape(m);
    // Every status and counter exists at 0 before the first job.
    expect(valueOf(s, "hearth_worker_jobs_total", { endpoint: "ep1", status: "completed" })).toBe(0);
    expect(valueOf(s, "hearth_worker_engine_restarts_total", { endpoint: "ep1" })).toBe(0);

    m.jobsRunning(1);
    s = await scrape(m);
    expect(valueOf(s, "hearth_worker_jobs_running", { endpoint: "ep1" })).toBe(1);
    m.jobFinished({ status: "COMPLETED", workerId: "w", startedAt: 1000, finishedAt: 1300, chunks: 4 });
    m.jobFinished({ status: "TIMED_OUT", error: "x", workerId: "w", startedAt: 0, finishedAt: 2000 });
    m.jobsRunning(0);
    s = await scrape(m);
    expect(valueOf(s, "hearth_worker_jobs_total", { endpoint: "ep1", status: "completed" })).toBe(1);
    expect(valueOf(s, "hearth_worker_jobs_total", { endpoint: "ep1", status: "timed_out" })).toBe(1);
    expect(valueOf(s, "hearth_worker_job_execution_seconds_count", { endpoint: "ep1", status: "completed" })).toBe(1);
    expect(valueOf(s, "hearth_worker_job_execution_seconds_sum", { endpoint: "ep1", status: "completed" })).toBeCloseTo(0.3);
    expect(valueOf(s, "hearth_worker_job_execution_seconds_bucket", { endpoint: "ep1", status: "timed_out", le: "1" })).toBe(0);
    expect(valueOf(s, "hearth_worker_job_execution_seconds_bucket", { endpoint: "ep1", status: "timed_out", le: "2.5" })).toBe(1);
    expect(valueOf(s, "hearth_worker_stream_chunks_total", { endpoint: "ep1" })).toBe(4);
    expect(valueOf(s, "hearth_worker_jobs_running", { endpoint: "ep1" })).toBe(0);
  });

  it("reports engine losses and health", async () => {
    const m = new WorkerMetrics({ registry: new Registry(), endpointId: "ep1", defaultMetrics: false });
    expect(valueOf(await scrape(m), "hearth_worker_engine_healthy", { endpoint: "ep1" })).toBe(0);
    m.engineHealth(true);
    expect(valueOf(await scrape(m), "hearth_worker_engine_healthy", { endpoint: "ep1" })).toBe(1);
    m.engineLost();
    m.engineHealth(false);
    const s = await scrape(m);
    expect(valueOf(s, "hearth_worker_engine_restarts_total", { endpoint: "ep1" })).toBe(1);
    expect(valueOf(s, "hearth_worker_engine_healthy", { endpoint: "ep1" })).toBe(0);
  });
});
