import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../apps/api/app.ts";
import type { ApiDeps } from "../apps/api/api-deps.ts";
import { ApiMetrics } from "../apps/api/metrics/api-metrics.ts";
import { examplesDir, STACK_ADMIN_TOKEN, startStack, type Stack } from "./support/hearth-stack.ts";
import { spawnControl } from "./support/entry-process.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix, waitFor } from "./support/services.ts";
import { parsePrometheusText, valueOf } from "./support/prometheus-text.ts";
import { readLog } from "./support/event-log-probe.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { parseLogEntry, parseStreamId, type LogEntry } from "../core/log/log-entry.ts";
import { z } from "zod";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import OpenAI from "openai";
import { pathToFileURL } from "node:url";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import type { AddressInfo } from "node:net";

/** The API's /metrics, scraped and parsed after real traffic through the whole stack. */
describe("API metrics", () => {
  let stack: Stack;
  let key: string;
  let ep: string;
  let parked: string;

  /** The stack's control plane registry, parsed as Prometheus reads it. */
  const control = async () => parsePrometheusText(await stack.control!.metrics.registry.metrics()).samples;
  /** An endpoint's log, parsed as the control plane reads it. */
  const logOf = async (endpointId: string): Promise<LogEntry[]> =>
    (await readLog(stack.redis, new RedisKeys(stack.redisPrefix).log(endpointId))).map((e) => parseLogEntry(e.id, [...e.fields].flat()));
  const msOf = (e: LogEntry | undefined) => parseStreamId(e!.id).ms;

  const scrape = async (token?: string) => {
    const res = await fetch(`${stack.api.url}/metrics`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });
    return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
  };

  beforeAll(async () => {
    stack = await startStack();
    key = await stack.tenant("metrics");
    ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 1, workersMax: 1 });
    // No worker may ever start here: its jobs wait, and the oldest one ages.
    parked = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 0, workersMax: 0 });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("is the admin's: 401 without the token", async () => {
    expect((await scrape()).status).toBe(401);
    expect((await scrape(key)).status).toBe(401);
  });

  it("counts each job once and each request by its route pattern, with its latency, and reads queues and workers at scrape time", async () => {
    for (let i = 0; i < 3; i++) expect((await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { i } } })).body.status).toBe("COMPLETED");
    expect((await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { nope: 1 } })).status).toBe(400);
    expect((await stack.call("GET", `/no/such/${ep}/path`, { key })).status).toBe(404);
    const waiting = await stack.call("POST", `/v2/${parked}/run`, { key, body: { input: "waits" } });
    expect(waiting.status).toBe(200);
    await new Promise((r) => setTimeout(r, 1200));

    const res = await scrape(STACK_ADMIN_TOKEN);
    expect(res.status).toBe(200);
    expect(res.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const { samples, types } = parsePrometheusText(res.text);

    expect(types.get("hearth_jobs_total")).toBe("counter");
    expect(valueOf(samples, "hearth_jobs_total", { endpoint: ep, status: "completed" })).toBe(3);
    expect(valueOf(samples, "hearth_jobs_total", { endpoint: ep, status: "failed" })).toBe(0);
    const runsync = { method: "POST", route: "/v2/:ep/runsync" };
    expect(types.get("hearth_http_request_duration_seconds")).toBe("histogram");
    expect(valueOf(samples, "hearth_http_request_duration_seconds_count", { ...runsync, status: "200" })).toBe(3);
    expect(valueOf(samples, "hearth_http_request_duration_seconds_count", { ...runsync, status: "400" })).toBe(1);
    expect(valueOf(samples, "hearth_http_request_duration_seconds_sum", { ...runsync, status: "200" })).toBeGreaterThan(0);
    expect(valueOf(samples, "hearth_http_request_duration_seconds_bucket", { ...runsync, status: "200", le: "+Inf" })).toBe(3);
    expect(valueOf(samples, "hearth_http_request_duration_seconds_count", { method: "GET", route: "unmatched", status: "404" })).toBe(1);
    // Labels are patterns and ids Hearth issued: no path, job id or body reaches them.
    const httpRoutes = new Set(samples.filter((s) => s.name.startsWith("hearth_http_")).map((s) => s.labels.route));
    for (const r of httpRoutes) expect(r === undefined || r.includes(ep) || r.includes(parked), r).toBe(false);

    expect(valueOf(samples, "hearth_queue_jobs", { endpoint: parked, state: "queued" })).toBe(1);
    expect(valueOf(samples, "hearth_queue_jobs", { endpoint: ep, state: "queued" })).toBe(0);
    expect(valueOf(samples, "hearth_queue_oldest_job_age_seconds", { endpoint: parked })).toBeGreaterThanOrEqual(1);
    expect(valueOf(samples, "hearth_queue_oldest_job_age_seconds", { endpoint: ep })).toBe(0);
    const workers = samples.filter((s) => s.name === "hearth_workers" && s.labels.endpoint === ep).reduce((n, s) => n + s.value, 0);
    expect(workers).toBe(1);
    expect(valueOf(samples, "process_cpu_user_seconds_total")).toBeGreaterThan(0);
    expect(valueOf(samples, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);
  }, 60_000);

  it("has the control plane observe each finished job once and each webhook attempt by outcome", async () => {
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        received.push(String(req.headers["webhook-id"]));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", () => r()));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      expect((await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: "hooked", webhook: url } })).body.status).toBe("COMPLETED");
      await waitFor(() => (received.length === 1 ? true : undefined), 20_000);
      // The four jobs of this endpoint, each once, however often their status was read.
      // The webhook and the records are two consumers of the log: wait for both to have seen the job.
      const samples = await waitFor(async () => {
        const s = await control();
        return valueOf(s, "hearth_webhook_attempt_seconds_count", { outcome: "delivered" }) === 1 && valueOf(s, "hearth_job_execution_seconds_count", { endpoint: ep, status: "completed" }) === 4 ? s : undefined;
      }, 20_000);
      expect(valueOf(samples, "hearth_job_execution_seconds_count", { endpoint: ep, status: "completed" })).toBe(4);
      expect(valueOf(samples, "hearth_job_execution_seconds_count", { endpoint: parked, status: "completed" })).toBeUndefined();
      // Each of them waited once in the queue; the parked job has not started, so has no wait yet.
      expect(valueOf(samples, "hearth_job_delay_seconds_count", { endpoint: ep })).toBe(4);
      expect(valueOf(samples, "hearth_job_delay_seconds_count", { endpoint: parked })).toBeUndefined();
    } finally {
      await new Promise((r) => receiver.close(r));
    }
  }, 60_000);

  it("has the control plane observe a cold job's queue wait, its worker's cold-start phases, exit and billed seconds, as the log dates them", async () => {
    // Scale from zero: the job waits for a worker that starts for it and stops after an idle second.
    const cold = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 0, workersMax: 1, idleTimeout: 1 });
    const run = await stack.call("POST", `/v2/${cold}/runsync`, { key, body: { input: "cold" } });
    expect(run.body.status).toBe("COMPLETED");
    const ledger = z.array(z.object({ key: z.string(), seconds: z.number(), gpu_type: z.string() }));
    const ledgerRows = await waitFor(async () => {
      // One read: the settlement and every row before it.
      const rows = ledger.parse(await stack.sql`select key, seconds, gpu_type from ledger_entries where endpoint_id = ${cold}`);
      return rows.some((r) => r.key.endsWith(":settle")) ? rows : undefined;
    }, 60_000);
    const charges = ledgerRows.map((r) => r.seconds);
    // One worker, one GPU type: the counters carry it as the ledger rows do.
    const gpuTypes = [...new Set(ledgerRows.map((r) => r.gpu_type))];
    expect(gpuTypes).toHaveLength(1);
    const gpu_type = gpuTypes[0]!;
    const billed = charges.filter((s) => s > 0).reduce((a, b) => a + b, 0);
    const returned = charges.filter((s) => s < 0).reduce((a, b) => a - b, 0);
    expect(billed).toBeGreaterThan(0);
    const samples = await waitFor(async () => {
      const s = await control();
      return valueOf(s, "hearth_worker_exits_total", { endpoint: cold, reason: "normal" }) === 1 && valueOf(s, "hearth_billed_seconds_total", { endpoint: cold, gpu_type }) === billed ? s : undefined;
    }, 20_000);
    expect(valueOf(samples, "hearth_billed_seconds_returned_total", { endpoint: cold, gpu_type }) ?? 0).toBe(returned);

    // The expected values, read from the log itself: entry ids are Redis' clock.
    const log = await logOf(cold);
    const jobId = run.body.id as string;
    const accepted = log.find((e) => e.kind === "accepted" && e.p.jobId === jobId);
    const active = log.find((e) => e.kind === "active" && e.jobId === jobId);
    expect(valueOf(samples, "hearth_job_delay_seconds_count", { endpoint: cold })).toBe(1);
    expect(valueOf(samples, "hearth_job_delay_seconds_sum", { endpoint: cold })).toBe((msOf(active) - msOf(accepted)) / 1000);

    const transitions = log.filter((e): e is Extract<LogEntry, { kind: "worker" }> => e.kind === "worker");
    expect(new Set(transitions.map((t) => t.p.workerId)).size).toBe(1);
    const first = (state: string) => transitions.find((t) => t.p.state === state);
    const ready = transitions.find((t) => t.p.state === "idle" || t.p.state === "running");
    const phase = (p: string) => ({ count: valueOf(samples, "hearth_worker_cold_start_seconds_count", { endpoint: cold, phase: p }), sum: valueOf(samples, "hearth_worker_cold_start_seconds_sum", { endpoint: cold, phase: p }) });
    expect(phase("provision")).toEqual({ count: 1, sum: (msOf(first("initializing")) - msOf(first("requested"))) / 1000 });
    expect(phase("boot")).toEqual({ count: 1, sum: (msOf(ready) - msOf(first("initializing"))) / 1000 });
    expect(phase("total")).toEqual({ count: 1, sum: (msOf(ready) - msOf(first("requested"))) / 1000 });
    // The job's wait held the whole cold start: it was accepted before the worker was requested.
    expect(msOf(accepted)).toBeLessThanOrEqual(msOf(first("requested")));
    for (const reason of ["crash", "start_failed", "unhealthy", "lost", "other"]) expect(valueOf(samples, "hearth_worker_exits_total", { endpoint: cold, reason }), reason).toBe(0);
    expect(valueOf(samples, "hearth_worker_transitions_total", { endpoint: cold, state: "requested" })).toBe(1);
  }, 120_000);

  it("has the control plane observe a real LLM job's TTFT, inter-token time, tokens/s and token counts once", async () => {
    const model = ensureTinyLlamaFile(join(tmpdir(), "hearth-metrics-tiny-llama.gguf"));
    const llm = await stack.endpoint(key, { engine: { kind: "openai", profile: "embedded", model: pathToFileURL(model).href, args: { threads: 1, "ctx-size": 512 }, concurrency: 1 } });
    // Streamed, as LLM clients call it: the engine's token timings come from the stream.
    const client = new OpenAI({ apiKey: key, baseURL: `${stack.api.url}/v2/${llm}/openai/v1` });
    const stream = await client.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "Hello" }], max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    if (!usage) throw new Error("no usage in the stream");
    expect(usage.completion_tokens).toBeGreaterThan(1);
    const samples = await waitFor(async () => {
      const s = await control();
      return valueOf(s, "hearth_llm_ttft_seconds_count", { endpoint: llm }) === 1 ? s : undefined;
    }, 30_000);
    expect(valueOf(samples, "hearth_llm_ttft_seconds_sum", { endpoint: llm })).toBeGreaterThan(0);
    expect(valueOf(samples, "hearth_llm_inter_token_seconds_count", { endpoint: llm })).toBe(1);
    expect(valueOf(samples, "hearth_llm_tokens_per_second_count", { endpoint: llm })).toBe(1);
    expect(valueOf(samples, "hearth_llm_prompt_tokens_total", { endpoint: llm })).toBe(usage.prompt_tokens);
    expect(valueOf(samples, "hearth_llm_completion_tokens_total", { endpoint: llm })).toBe(usage.completion_tokens);
  }, 90_000);

  it("drops a deleted endpoint's series", async () => {
    expect((await stack.call("DELETE", `/api/v1/endpoints/${parked}`, { key })).status).toBe(200);
    const { samples } = parsePrometheusText((await scrape(STACK_ADMIN_TOKEN)).text);
    expect(samples.some((s) => s.labels.endpoint === parked)).toBe(false);
  }, 30_000);
});

describe("HEARTH_METRICS_PUBLIC", () => {
  it("serves /metrics without a token when set, and only with the admin token when not", async () => {
    const deps = (metricsPublic: boolean) => ({ adminToken: "a".repeat(32), handlerDirs: [], metrics: new ApiMetrics({ sampleEndpoints: async () => [] }), metricsPublic }) as unknown as ApiDeps;
    const open = await createApp(deps(true)).request("/metrics");
    expect(open.status).toBe(200);
    expect(await open.text()).toContain("# TYPE hearth_http_request_duration_seconds histogram");
    expect((await createApp(deps(false)).request("/metrics")).status).toBe(401);
  });
});

describe("the control plane's metrics listener", () => {
  it("serves /metrics on HEARTH_CONTROL_METRICS_PORT and nothing else there", async () => {
    const db = await createTestDatabase();
    const control = await spawnControl({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(), env: { HEARTH_CONTROL_METRICS_PORT: "0" } });
    try {
      const url = /"metrics":"([^"]+)"/.exec(control.output())?.[1];
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const res = await fetch(url!);
      expect(res.status).toBe(200);
      const { types } = parsePrometheusText(await res.text());
      expect(types.get("hearth_job_execution_seconds")).toBe("histogram");
      expect(types.get("hearth_webhook_attempt_seconds")).toBe("histogram");
      expect((await fetch(url!.replace("/metrics", "/other"))).status).toBe(404);
    } finally {
      await control.kill();
      await db.drop();
    }
  }, 60_000);
});
