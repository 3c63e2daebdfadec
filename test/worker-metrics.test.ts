import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { examplesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { parsePrometheusText, valueOf } from "./support/prometheus-text.ts";
import { waitFor } from "./support/services.ts";

const sdFileSchema = z.array(z.object({ targets: z.array(z.string()).length(1), labels: z.object({ endpoint: z.string(), worker: z.string() }).strict() }).strict());

/**
 * Workers' and the scheduler's `/metrics` on a whole stack: real worker processes serving their own
 * registry on a loopback port the OS picked, found through the discovery file the scheduler keeps.
 */
describe("worker and scheduler metrics", () => {
  let stack: Stack;
  let key: string;
  let dir: string;
  let sdFile: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "hearth-sd-"));
    sdFile = join(dir, "workers.json");
    stack = await startStack({ tickMs: 200, metrics: { workerSdFile: sdFile } });
    key = await stack.tenant("metrics");
  });
  afterAll(async () => {
    await stack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const targets = async () => sdFileSchema.parse(JSON.parse(await readFile(sdFile, "utf8")));
  const scrape = async (url: string) => {
    const r = await fetch(url);
    expect(r.status).toBe(200);
    return parsePrometheusText(await r.text()).samples;
  };

  it("a job run on a worker is counted once on that worker's /metrics, found through the discovery file; the scheduler counts the start; the worker leaves the file when it stops", async () => {
    // No idle timeout to race: the worker stays until the endpoint is deleted.
    const ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "stream.mjs") }, workersMax: 1, idleTimeout: 3600 });
    expect(await targets()).toEqual([]); // written empty at the scheduler's start

    const submitted = await stack.call("POST", `/v2/${ep}/run`, { key, body: { input: { count: 3 } } });
    expect(submitted.status).toBe(200);
    const id = submitted.body.id as string;
    const done = await waitFor(async () => {
      const s = (await stack.call("GET", `/v2/${ep}/status/${id}`, { key })).body;
      return s.status === "COMPLETED" ? s : undefined;
    }, 30_000);
    const workerId = done.workerId as string;

    // The worker's port, as its heartbeat reports it, is the one the file lists, under its ids. The
    // beat after start() is coalesced (25 ms): a job done sooner (a prestarted worker) can finish
    // while the last beat written is still the one from before the metrics were attached.
    const hb = await waitFor(async () => {
      const beat = workerHeartbeat.parse(JSON.parse((await stack.redis.hget(new RedisKeys(stack.redisPrefix).workers(ep), workerId))!));
      return beat.metricsPort !== undefined ? beat : undefined;
    }, 5_000);
    expect(hb.metricsPort).toBeGreaterThan(0);
    const listed = await waitFor(async () => ((await targets()).length === 1 ? targets() : undefined), 10_000);
    expect(listed).toEqual([{ targets: [`127.0.0.1:${hb.metricsPort}`], labels: { endpoint: ep, worker: workerId } }]);
    const workerUrl = `http://${listed[0]!.targets[0]}/metrics`;

    const w = await scrape(workerUrl);
    expect(valueOf(w, "hearth_worker_jobs_total", { endpoint: ep, status: "completed" })).toBe(1);
    expect(valueOf(w, "hearth_worker_jobs_total", { endpoint: ep, status: "failed" })).toBe(0);
    expect(valueOf(w, "hearth_worker_job_execution_seconds_count", { endpoint: ep, status: "completed" })).toBe(1);
    expect(valueOf(w, "hearth_worker_job_execution_seconds_bucket", { endpoint: ep, status: "completed", le: "+Inf" })).toBe(1);
    expect(valueOf(w, "hearth_worker_stream_chunks_total", { endpoint: ep })).toBe(3);
    expect(valueOf(w, "hearth_worker_jobs_running", { endpoint: ep })).toBe(0);
    expect(valueOf(w, "hearth_worker_engine_healthy", { endpoint: ep })).toBe(1);
    expect(valueOf(w, "hearth_worker_engine_restarts_total", { endpoint: ep })).toBe(0);
    expect(valueOf(w, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    // A second scrape does not count the job again.
    expect(valueOf(await scrape(workerUrl), "hearth_worker_jobs_total", { endpoint: ep, status: "completed" })).toBe(1);

    const s = parsePrometheusText(await stack.schedulerMetrics!.registry.metrics()).samples;
    expect(valueOf(s, "hearth_scheduler_workers_started_total", { endpoint: ep, provider: "local" })).toBe(1);
    expect(valueOf(s, "hearth_scheduler_provider_start_seconds_count", { provider: "local" })).toBeGreaterThanOrEqual(1);
    expect(valueOf(s, "hearth_scheduler_leader")).toBe(1);
    expect(valueOf(s, "hearth_scheduler_workers_live", { endpoint: ep })).toBe(1);
    expect(valueOf(s, "hearth_scheduler_tick_seconds_count")).toBeGreaterThan(0);

    // Deleting the endpoint drains its worker: gone from the file, its port no longer answers, the scheduler goes on.
    expect((await stack.call("DELETE", `/api/v1/endpoints/${ep}`, { key })).status).toBe(200);
    await waitFor(async () => ((await targets()).length === 0 ? true : undefined), 30_000);
    await expect(fetch(workerUrl)).rejects.toThrow();
    const after = parsePrometheusText(await stack.schedulerMetrics!.registry.metrics()).samples;
    expect(valueOf(after, "hearth_scheduler_workers_stopped_total", { endpoint: ep, reason: "endpoint_deleted" })).toBe(1);
    expect(valueOf(after, "hearth_scheduler_workers_stopped_total", { endpoint: ep, reason: "crashed" })).toBe(0);
    // The deleted endpoint's gauges are dropped at the next pass.
    await waitFor(async () => (valueOf(parsePrometheusText(await stack.schedulerMetrics!.registry.metrics()).samples, "hearth_scheduler_workers_desired", { endpoint: ep }) === undefined ? true : undefined), 10_000);
    expect(stack.scheduler.isLeader).toBe(true);
  });
});
