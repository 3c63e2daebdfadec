import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis/connect.ts";
import { openDb, type DbHandle } from "../core/db/client.ts";
import { endpoints, tenants, workerSessions } from "../core/db/schema.ts";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { TEST_REDIS_URL, clearPrefix, createTestDatabase, uniquePrefix, waitFor } from "./support/services.ts";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { parsePrometheusText, valueOf } from "./support/prometheus-text.ts";

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const schedulerMain = fileURLToPath(new URL("../scheduler/main.ts", import.meta.url));
const handlerDir = fileURLToPath(new URL("../images/handler/examples", import.meta.url));
const echoModule = fileURLToPath(new URL("../images/handler/examples/echo.mjs", import.meta.url));

let database: { url: string; drop: () => Promise<void> };
let dbh: DbHandle;
let redis: Redis;
const prefixes: string[] = [];
const children: ChildProcess[] = [];
const controls: ControlPlane[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  dbh = openDb(database.url, { max: 2 });
  redis = connectRedis(TEST_REDIS_URL);
  await dbh.db.insert(tenants).values({ id: "t-main", name: "scheduler main" });
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const c of controls.splice(0)) await c.stop();
  for (const p of prefixes.splice(0)) await clearPrefix(redis, p);
  // Each test's scheduler serves every live endpoint of the shared database: retire this test's.
  await dbh.db.update(endpoints).set({ deletedAt: new Date() });
});
afterAll(async () => {
  await redis.quit();
  await dbh.close();
  await database.drop();
});

/** An endpoint with one always-on worker, and a scheduler process serving it (with `env` added to its environment). */
async function startSchedulerProcess(env: Record<string, string> = {}) {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  const keys = new RedisKeys(prefix);
  const endpointId = `ep-${randomBytes(4).toString("hex")}`;
  await dbh.db.insert(endpoints).values({
    id: endpointId,
    tenantId: "t-main",
    name: endpointId,
    engine: { kind: "handler", module: echoModule },
    gpuTypeIds: [],
    workersMin: 1,
    workersMax: 1,
    idleTimeout: 5,
    scalerType: "QUEUE_DELAY",
    scalerValue: 4,
    executionTimeoutMs: 60_000,
    flashboot: false,
  });
  // The log's consumer, projecting the sessions this test checks.
  const control = new ControlPlane({ redis, sql: dbh.sql, keys, log: () => {}, blockMs: 100 });
  control.start();
  controls.push(control);
  const child = spawn(process.execPath, ["--import", "tsx", schedulerMain], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      DATABASE_URL: database.url,
      REDIS_URL: TEST_REDIS_URL,
      HEARTH_REDIS_PREFIX: prefix,
      HEARTH_HANDLER_DIRS: handlerDir,
      HEARTH_SCHEDULER_TICK_MS: "200",
      ...env,
    },
  });
  children.push(child);
  let output = "";
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

  // The worker is up once it reports idle.
  await waitFor(async () => {
    const hash = await redis.hgetall(keys.workers(endpointId));
    return Object.values(hash).some((raw) => workerHeartbeat.parse(JSON.parse(raw)).state === "idle");
  }, 30_000).catch((err: unknown) => {
    throw new Error(`${String(err)}\nscheduler output:\n${output}`);
  });
  // Children that run the worker's build, dist/worker/main.js: the worker, and the prestarted spare
  // booted once it was ready (HEARTH_PRESTARTED_WORKERS, 1 by default). Neither may outlive the scheduler.
  const buildChildren = () => {
    let out = "";
    try {
      out = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(child.pid)], { encoding: "utf8" });
    } catch {
      return []; // no child at all
    }
    return out
      .split("\n")
      .filter((line) => line.includes("dist/worker/main.js"))
      .map((line) => Number(line.trim().split(/\s+/)[0]));
  };
  const workerPids = await waitFor(() => {
    const pids = buildChildren();
    return pids.length === 2 ? pids : undefined;
  }, 20_000);
  return { child, exited, keys, endpointId, workerPids, output: () => output };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("scheduler process", () => {
  it("on SIGTERM drains its workers, records their sessions, and exits 0 leaving no process behind", async () => {
    const s = await startSchedulerProcess();
    s.child.kill("SIGTERM");
    expect(await s.exited).toBe(0);
    for (const pid of s.workerPids) expect(alive(pid)).toBe(false);
    expect(await redis.hgetall(s.keys.workers(s.endpointId))).toEqual({});
    const rows = await waitFor(async () => {
      const rs = await sessions(s.endpointId);
      return rs.length === 1 && rs[0]!.endedAt !== null && rs[0]!.exitCode !== null ? rs : undefined;
    });
    expect(rows[0]).toMatchObject({ state: "exited", exitCode: 0, tenantId: "t-main", provider: "local", gpuType: "cpu" });
    expect(rows[0]!.requestedAt!.getTime()).toBeLessThanOrEqual(rows[0]!.readyAt!.getTime());
    expect(rows[0]!.readyAt!.getTime()).toBeLessThanOrEqual(rows[0]!.endedAt!.getTime());
    expect(s.output()).toContain('"msg":"shutting down"');
  });

  it("killed outright, still leaves no worker behind and no session open: its workers drain and log their own exit", async () => {
    const s = await startSchedulerProcess();
    s.child.kill("SIGKILL");
    await s.exited;
    await waitFor(() => s.workerPids.every((pid) => !alive(pid)), 30_000);
    await waitFor(async () => Object.keys(await redis.hgetall(s.keys.workers(s.endpointId))).length === 0);
    const rows = await waitFor(async () => {
      const rs = await sessions(s.endpointId);
      return rs.length === 1 && rs[0]!.endedAt !== null ? rs : undefined;
    });
    // No provider was left to see the exit code; the worker said why it went.
    expect(rows[0]).toMatchObject({ state: "exited", endReason: "parent disconnected" });
  });
});

describe("scheduler process metrics", () => {
  it("serves its /metrics where it logs, keeps the discovery file its workers' /metrics are found by, and empties it when it stops", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hearth-sd-"));
    try {
      const sdFile = join(dir, "workers.json");
      const s = await startSchedulerProcess({ HEARTH_SCHEDULER_METRICS_PORT: "0", HEARTH_WORKER_SD_FILE: sdFile });
      const started = s.output().split("\n").find((l) => l.includes('"msg":"scheduler started"'));
      const schedulerUrl = z.object({ metrics: z.url(), workerSdFile: z.literal(sdFile) }).parse(JSON.parse(started!)).metrics;

      const groups = await waitFor(async () => {
        const g = JSON.parse(await readFile(sdFile, "utf8")) as { targets: string[]; labels: Record<string, string> }[];
        return g.length === 1 ? g : undefined;
      });
      expect(groups[0]!.labels.endpoint).toBe(s.endpointId);
      const worker = parsePrometheusText(await (await fetch(`http://${groups[0]!.targets[0]}/metrics`)).text()).samples;
      expect(valueOf(worker, "hearth_worker_engine_healthy", { endpoint: s.endpointId })).toBe(1);
      expect(valueOf(worker, "hearth_worker_jobs_total", { endpoint: s.endpointId, status: "completed" })).toBe(0);

      const scheduler = parsePrometheusText(await (await fetch(schedulerUrl)).text()).samples;
      expect(valueOf(scheduler, "hearth_scheduler_leader")).toBe(1);
      expect(valueOf(scheduler, "hearth_scheduler_workers_started_total", { endpoint: s.endpointId, provider: "local" })).toBe(1);
      expect(valueOf(scheduler, "hearth_scheduler_workers_desired", { endpoint: s.endpointId })).toBe(1);
      expect(valueOf(scheduler, "nodejs_heap_size_used_bytes")).toBeGreaterThan(0);

      s.child.kill("SIGTERM");
      expect(await s.exited).toBe(0);
      expect(JSON.parse(await readFile(sdFile, "utf8"))).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("runs on when the discovery file cannot be written: the failure is logged, workers start and serve", async () => {
    const s = await startSchedulerProcess({ HEARTH_WORKER_SD_FILE: "/nonexistent-hearth-dir/workers.json" });
    const warned = s.output().split("\n").filter((l) => l.includes('"msg":"worker service discovery file not written"'));
    expect(warned).toHaveLength(1);
    expect(JSON.parse(warned[0]!)).toMatchObject({ level: "warn", path: "/nonexistent-hearth-dir/workers.json", code: "ENOENT" });
    expect(s.child.exitCode).toBeNull();
    const hb = Object.values(await redis.hgetall(s.keys.workers(s.endpointId))).map((raw) => workerHeartbeat.parse(JSON.parse(raw)));
    // Worker metrics are on with the file asked for, written or not.
    expect(hb[0]?.metricsPort).toBeGreaterThan(0);
  });
});

const sessions = (endpointId: string) => dbh.db.select().from(workerSessions).where(eq(workerSessions.endpointId, endpointId));
