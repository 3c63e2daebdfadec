import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { parsePrometheusText, valueOf } from "../test/support/prometheus-text.ts";
import { SchedulerMetrics } from "./scheduler-metrics.ts";

const scrape = async (m: SchedulerMetrics) => parsePrometheusText(await m.registry.metrics()).samples;

describe("SchedulerMetrics", () => {
  it("counts starts with the provider's start latency, and exits by reason with every reason present from the first", async () => {
    const m = new SchedulerMetrics({ registry: new Registry(), defaultMetrics: false });
    m.workerStarted("ep1", "local", 0.04);
    m.workerStartFailed("ep1", "local");
    m.workerEnded("ep1", "idle");
    const s = await scrape(m);
    expect(valueOf(s, "hearth_scheduler_workers_started_total", { endpoint: "ep1", provider: "local" })).toBe(1);
    expect(valueOf(s, "hearth_scheduler_worker_start_failures_total", { endpoint: "ep1", provider: "local" })).toBe(1);
    expect(valueOf(s, "hearth_scheduler_provider_start_seconds_count", { provider: "local" })).toBe(1);
    expect(valueOf(s, "hearth_scheduler_provider_start_seconds_bucket", { provider: "local", le: "0.05" })).toBe(1);
    expect(valueOf(s, "hearth_scheduler_provider_start_seconds_bucket", { provider: "local", le: "0.025" })).toBe(0);
    expect(valueOf(s, "hearth_scheduler_workers_stopped_total", { endpoint: "ep1", reason: "idle" })).toBe(1);
    expect(valueOf(s, "hearth_scheduler_workers_stopped_total", { endpoint: "ep1", reason: "crashed" })).toBe(0);
  });

  it("sets desired, live and held-back gauges per endpoint, and drops them for endpoints no longer served or when leadership goes", async () => {
    const m = new SchedulerMetrics({ registry: new Registry(), defaultMetrics: false });
    m.leadership(true);
    m.endpointScaled("ep1", { desired: 3, live: 1, heldBack: 2, heldBackReason: "quota" });
    m.endpointScaled("ep2", { desired: 0, live: 0, heldBack: 0 });
    let s = await scrape(m);
    expect(valueOf(s, "hearth_scheduler_leader")).toBe(1);
    expect(valueOf(s, "hearth_scheduler_workers_desired", { endpoint: "ep1" })).toBe(3);
    expect(valueOf(s, "hearth_scheduler_workers_live", { endpoint: "ep1" })).toBe(1);
    expect(valueOf(s, "hearth_scheduler_workers_held_back", { endpoint: "ep1", reason: "quota" })).toBe(2);
    expect(valueOf(s, "hearth_scheduler_workers_held_back", { endpoint: "ep2" })).toBeUndefined();

    // Capacity freed: the held-back series goes, not left at its last value.
    m.endpointScaled("ep1", { desired: 3, live: 3, heldBack: 0 });
    m.keepEndpoints(new Set(["ep1"]));
    s = await scrape(m);
    expect(valueOf(s, "hearth_scheduler_workers_held_back", { endpoint: "ep1" })).toBeUndefined();
    expect(valueOf(s, "hearth_scheduler_workers_desired", { endpoint: "ep2" })).toBeUndefined();
    expect(valueOf(s, "hearth_scheduler_workers_live", { endpoint: "ep1" })).toBe(3);

    m.leadership(false);
    s = await scrape(m);
    expect(valueOf(s, "hearth_scheduler_leader")).toBe(0);
    expect(s.filter((x) => x.name.startsWith("hearth_scheduler_workers_"))).toEqual([]);
  });
});
