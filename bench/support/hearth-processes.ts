import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { BenchContext } from "./bench-result.ts";
import type { CleanupStack } from "./cleanup-stack.ts";
import { jsonLine, startChild, type RunningChild } from "./child-process.ts";
import type { CpuRole } from "./cpu-usage.ts";

export const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const noopHandler = fileURLToPath(new URL("../../images/handler/examples/noop.mjs", import.meta.url));

export interface HearthOptions {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  cleanup: CleanupStack;
  /** Node flags for the API child only (e.g. `--cpu-prof`). */
  apiNodeArgs?: string[];
  /** Node flags for the control plane child (its consumers share the machine with the API). */
  controlNodeArgs?: string[];
  echo?: boolean;
  /** Extra variables for every child (e.g. the egress settings a webhook benchmark needs); they win over the defaults. */
  env?: NodeJS.ProcessEnv;
  /** Every line the scheduler prints, its workers' forwarded JSON lines among them. */
  onSchedulerLine?: (line: string) => void;
}

/** Hearth as it is deployed: the API, the control plane and the scheduler (which runs the workers) as separate processes. */
export interface RunningHearth {
  url: string;
  adminToken: string;
  api: RunningChild<string>;
  scheduler: RunningChild<true>;
  /** The event log's consumers: they share the machine with what is measured, as in a one-box deployment. */
  control: RunningChild<true>;
  /** POSTs JSON with a Bearer token and returns the parsed body; throws on a non-200. */
  post(path: string, token: string, body: unknown): Promise<Record<string, unknown>>;
  get(path: string, token: string): Promise<Record<string, unknown>>;
  put(path: string, token: string, body: unknown): Promise<Record<string, unknown>>;
  /** A tenant's API key. */
  createTenant(name: string): Promise<string>;
  /** The new endpoint's id. */
  createEndpoint(apiKey: string, body: Record<string, unknown>): Promise<string>;
  waitIdleWorkers(apiKey: string, endpointId: string, atLeast: number, timeoutMs?: number): Promise<void>;
  /** A tenant (credited) and a handler endpoint with exactly one worker, warm: the setup the latency benchmarks share. */
  oneWarmWorker(tenant: string, name: string, module: string): Promise<{ apiKey: string; endpointId: string }>;
  /** Scheduler first (it drains its workers), then the control plane and the API. */
  stop(): Promise<void>;
}

/**
 * Whose CPU a benchmark of Hearth counts, by role: itself, each Hearth process, Redis and Postgres.
 * Benchmarks add where their workers run (`workers`, or a `worker` and its `engine`).
 */
export function hearthCpuRoles(hearth: RunningHearth): Record<string, CpuRole> {
  return {
    bench: { self: process.pid },
    api: { self: hearth.api.pid },
    scheduler: { self: hearth.scheduler.pid },
    control: { self: hearth.control.pid },
    redis: { comm: "redis-server" },
    postgres: { comm: "postgres" },
  };
}

/** Node flags that make the API write V8 CPU profiles into `<dir>/<bench>` (one per thread; tsx adds a loader thread). */
export function apiProfileArgs(dir: string | undefined, bench: string): string[] | undefined {
  return dir ? ["--cpu-prof", "--cpu-prof-dir", join(dir, bench)] : undefined;
}

/**
 * The API's main-thread profile (thread 0 of its pid, in Node's default file name) and the part of
 * it that is the measured load, in ms since the API was spawned (`from`/`until` are this process's
 * `performance.now()` values). Call after the API exited: Node writes the profile at exit.
 */
export function apiProfileWindow(dir: string | undefined, bench: string, api: { pid: number; spawnedAt: number }, from: number, until: number) {
  if (!dir) return undefined;
  const folder = join(dir, bench);
  const name = readdirSync(folder).find((f) => f.includes(`.${api.pid}.0.`) && f.endsWith(".cpuprofile"));
  if (!name) return { error: `no main-thread profile of pid ${api.pid} in ${folder}` };
  const file = join(folder, name);
  const skipMs = Math.round(from - api.spawnedAt);
  const untilMs = Math.round(until - api.spawnedAt);
  return { file, skipMs, untilMs, summarize: `node --import tsx bench/cpu-profile-top.ts ${file} --skip-ms ${skipMs} --until-ms ${untilMs}` };
}

/** Hearth for one benchmark of a run: the run's database and Redis prefix, its cleanup, and the API profiled when asked. */
export function startHearthFor(ctx: BenchContext, bench: string, env?: NodeJS.ProcessEnv, onSchedulerLine?: (line: string) => void): Promise<RunningHearth> {
  const { config, isolation, cleanup } = ctx;
  return startHearth({
    databaseUrl: isolation.databaseUrl,
    redisUrl: config.redisUrl,
    redisPrefix: isolation.redisPrefix,
    cleanup,
    apiNodeArgs: apiProfileArgs(config.cpuProfDir, bench),
    controlNodeArgs: apiProfileArgs(config.cpuProfDir, `${bench}-control`),
    echo: config.verbose,
    env,
    ...(onSchedulerLine && { onSchedulerLine }),
  });
}

export async function startHearth(options: HearthOptions): Promise<RunningHearth> {
  const adminToken = `hadm_bench_${randomBytes(16).toString("hex")}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: options.databaseUrl,
    REDIS_URL: options.redisUrl,
    HEARTH_REDIS_PREFIX: options.redisPrefix,
    HEARTH_ADMIN_TOKEN: adminToken,
    // llm-stream writes its model under the temp directory (bench/llm-stream.ts): local models must lie in HEARTH_MODEL_DIRS.
    HEARTH_MODEL_DIRS: process.env.HEARTH_MODEL_DIRS || join(tmpdir(), "hearth-bench"),
    PORT: "0",
    HOST: "127.0.0.1",
    ...options.env,
  };
  // The API migrates (and creates) the database, so the scheduler starts only once it listens.
  const api = await startChild(
    {
      name: "hearth-api",
      entry: `${repoRoot}apps/api/main.ts`,
      env,
      nodeArgs: options.apiNodeArgs,
      echo: options.echo,
      ready: jsonLine((o) => (o.component === "api" && o.msg === "listening" && typeof o.url === "string" ? o.url : undefined)),
    },
    options.cleanup,
  );
  const scheduler = await startChild(
    {
      name: "hearth-scheduler",
      entry: `${repoRoot}scheduler/main.ts`,
      env,
      echo: options.echo,
      ...(options.onSchedulerLine && { onLine: options.onSchedulerLine }),
      ready: jsonLine((o) => (o.msg === "scheduler started" ? true : undefined)),
    },
    options.cleanup,
  );
  const control = await startChild(
    {
      name: "hearth-control",
      entry: `${repoRoot}apps/control/main.ts`,
      env,
      nodeArgs: options.controlNodeArgs,
      echo: options.echo,
      ready: jsonLine((o) => (o.msg === "control plane started" ? true : undefined)),
    },
    options.cleanup,
  );
  const url = api.ready;

  const call = async (method: string, path: string, token: string, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
  const post = (path: string, token: string, body: unknown) => call("POST", path, token, body);
  const get = (path: string, token: string) => call("GET", path, token);
  const put = (path: string, token: string, body: unknown) => call("PUT", path, token, body);

  const running: RunningHearth = {
    url,
    adminToken,
    api,
    scheduler,
    control,
    post,
    get,
    put,
    // The default mode (enforce) with a credit: the job path pays for its balance check, as in production.
    createTenant: async (name) => {
      const t = await post("/admin/tenants", adminToken, { name });
      await post(`/admin/tenants/${t.id as string}/credits`, adminToken, { amountMicros: 1_000_000_000, reason: "benchmark" });
      return t.apiKey as string;
    },
    createEndpoint: async (apiKey, body) => (await post("/api/v1/endpoints", apiKey, body)).id as string,
    oneWarmWorker: async (tenant, name, module) => {
      const apiKey = await running.createTenant(tenant);
      // workersMax 1: exactly one warm worker, as the floors have exactly one consumer.
      const endpointId = await running.createEndpoint(apiKey, { name, engine: { kind: "handler", module }, workersMin: 1, workersMax: 1 });
      await running.waitIdleWorkers(apiKey, endpointId, 1);
      return { apiKey, endpointId };
    },
    waitIdleWorkers: async (apiKey, endpointId, atLeast, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      let last: unknown;
      while (Date.now() < deadline) {
        last = await get(`/v2/${endpointId}/health`, apiKey);
        const idle = (last as { workers?: { idle?: number } }).workers?.idle ?? 0;
        if (idle >= atLeast) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`no ${atLeast} idle worker(s) on ${endpointId} within ${timeoutMs} ms; last health ${JSON.stringify(last)}\n${scheduler.tail()}`);
    },
    stop: async () => {
      await scheduler.stop();
      await control.stop();
      await api.stop();
    },
  };
  return running;
}
