import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Job, Queue } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { openDb, type DbHandle } from "../core/db/client.ts";
import { endpoints, tenants } from "../core/db/schema.ts";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { jobResult, type JobData } from "../core/queue/job-catalog.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { connectRedis } from "../core/redis/connect.ts";
import { WORKER_USER_PREFIX, prefixTag } from "../core/redis/worker-acl.ts";
import { LocalProvider } from "../scheduler/providers/local-provider.ts";
import { Scheduler } from "../scheduler/scheduler.ts";
import { WorkerRedisUsers } from "../scheduler/worker-redis-users.ts";
import { apiClient } from "./support/api-client.ts";
import { findEngineProcesses, pidFromHeartbeat } from "./support/engine-processes.ts";
import { spawnApi, spawnControl } from "./support/entry-process.ts";
import { startStack } from "./support/hearth-stack.ts";
import { startOwnRedis } from "./support/own-redis.ts";
import { clearPrefix, createTestDatabase, TEST_REDIS_URL, uniquePrefix, waitFor } from "./support/services.ts";

/**
 * The worker side of the trust boundary, on real processes: workers started by the scheduler with
 * the embedded engine, read from the outside through /proc.
 */

const repoRoot = fileURLToPath(new URL("..", import.meta.url));
const schedulerMain = fileURLToPath(new URL("../scheduler/main.ts", import.meta.url));
const examplesDir = fileURLToPath(new URL("../images/handler/examples", import.meta.url));
const NOBODY_UID = Number(readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.startsWith("nobody:"))?.split(":")[2]);
const runningAsRoot = process.getuid?.() === 0;

/** What the scheduler holds and no worker or engine may see. */
const PLATFORM_SECRETS = {
  HEARTH_ADMIN_TOKEN: "hadm_platform-secret-admin-token",
  HEARTH_SECRETS_KEY: "5ec2e7".repeat(10) + "5ec2", // 64 hex characters, as the scheduler requires
  AWS_ACCESS_KEY_ID: "AKIAPLATFORMSECRET",
  AWS_SECRET_ACCESS_KEY: "platform-secret-aws",
  PGPASSWORD: "platform-secret-pg",
};

function environ(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of readFileSync(`/proc/${pid}/environ`, "latin1").split("\0")) {
    const at = pair.indexOf("=");
    if (at > 0) env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return env;
}
const uidOf = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return stat.slice(stat.lastIndexOf(")") + 2).split(" "); // [state, ppid, pgrp, session, …]
}
/** Running (a zombie waiting to be reaped runs nothing). */
function alive(pid: number): boolean {
  try {
    return statFields(pid)[0] !== "Z";
  } catch {
    return false;
  }
}
const aclUsers = async (redis: Redis) => (await redis.call("ACL", "USERS")) as string[];

let database: { url: string; drop: () => Promise<void> };
let dbh: DbHandle;
let redis: Redis;
let modelDir: string;
const prefixes: string[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  dbh = openDb(database.url, { max: 2 });
  redis = connectRedis(TEST_REDIS_URL);
  await dbh.db.insert(tenants).values({ id: "t-priv", name: "privilege" });
  modelDir = await mkdtemp(join(tmpdir(), "hearth-privilege-"));
  await chmod(modelDir, 0o755); // the engine user must reach the model
});
afterAll(async () => {
  for (const p of prefixes) await clearPrefix(redis, p);
  await redis.quit();
  await dbh.close();
  await database.drop();
  await rm(modelDir, { recursive: true, force: true });
});

/** An embedded-engine endpoint with one always-on worker; its model path is unique, so its engine can be found in /proc. */
async function embeddedEndpoint(): Promise<{ endpointId: string; modelPath: string }> {
  const endpointId = `ep-${randomBytes(4).toString("hex")}`;
  const modelPath = ensureTinyLlamaFile(join(modelDir, `${endpointId}.gguf`));
  await dbh.db.insert(endpoints).values({
    id: endpointId,
    tenantId: "t-priv",
    name: endpointId,
    engine: { kind: "openai", profile: "embedded", model: `file://${modelPath}`, args: { threads: 1, "ctx-size": 512 }, concurrency: 2, startupTimeoutMs: 120_000 },
    gpuTypeIds: [],
    workersMin: 1,
    workersMax: 1,
    idleTimeout: 300,
    scalerType: "QUEUE_DELAY",
    scalerValue: 4,
    executionTimeoutMs: 60_000,
    flashboot: false,
  });
  return { endpointId, modelPath };
}

/** The endpoint's worker once it reports idle (its engine is up), with its engine process. */
async function idleWorker(keys: RedisKeys, endpointId: string, modelPath: string, output = () => "") {
  const workerId = await waitFor(async () => {
    const hash = await redis.hgetall(keys.workers(endpointId));
    return Object.entries(hash).find(([, raw]) => workerHeartbeat.parse(JSON.parse(raw)).state === "idle")?.[0];
  }, 90_000).catch((err: unknown) => {
    throw new Error(`${String(err)}\n${output()}`);
  });
  const workerPid = await pidFromHeartbeat(redis, keys, endpointId, workerId);
  const engines = findEngineProcesses(modelPath).filter((e) => e.parentPid === workerPid);
  expect(engines).toHaveLength(1);
  return { workerId, workerPid, enginePid: engines[0]!.pid };
}

describe("workers and engines started by the scheduler", { timeout: 180_000 }, () => {
  const prefix = uniquePrefix();
  prefixes.push(prefix);
  const keys = new RedisKeys(prefix);
  let scheduler: Scheduler;
  let endpointId: string;
  let modelPath: string;
  let worker: Awaited<ReturnType<typeof idleWorker>>;

  beforeAll(async () => {
    ({ endpointId, modelPath } = await embeddedEndpoint());
    const provider = new LocalProvider({
      redisUrl: TEST_REDIS_URL,
      redisPrefix: prefix,
      handlerDirs: [examplesDir],
      workerLockMs: 5000,
      output: process.env.HEARTH_TEST_WORKER_LOGS ? "forward" : "silent",
      // The scheduler's own environment, secrets included: what reaches the worker is the provider's allow-list.
      inheritEnv: { ...process.env, ...PLATFORM_SECRETS, DATABASE_URL: database.url, HEARTH_MODEL_DIRS: modelDir },
    });
    const workerRedisUsers = new WorkerRedisUsers({ redis, redisUrl: TEST_REDIS_URL, keys, enabled: true, log: () => {} });
    scheduler = new Scheduler({ redis, db: dbh.db, provider, workerRedisUsers, redisPrefix: prefix, tickMs: 300, drainTimeoutMs: 5000, log: () => {} });
    await scheduler.start();
    worker = await idleWorker(keys, endpointId, modelPath);
  }, 120_000);
  afterAll(async () => {
    await scheduler?.close();
    await dbh.db.update(endpoints).set({ deletedAt: new Date() });
  });

  it("the worker gets none of the scheduler's secrets and a Redis user of its own", () => {
    const env = environ(worker.workerPid);
    for (const name of [...Object.keys(PLATFORM_SECRETS), "DATABASE_URL"]) expect(env, name).not.toHaveProperty(name);
    expect(decodeURIComponent(new URL(env.REDIS_URL!).username)).toBe(`${WORKER_USER_PREFIX}${prefixTag(prefix)}:${endpointId}:${worker.workerId}`);
  });

  it.runIf(runningAsRoot)("the engine runs as nobody, in the worker's process group, with a private HOME and only its profile's variables", () => {
    const env = environ(worker.enginePid);
    expect(Object.keys(env).sort()).toEqual(expect.arrayContaining(["HOME", "PATH", "PORT", "TMPDIR"]));
    for (const name of Object.keys(env)) expect(name).toMatch(/^(PATH|HOME|TMPDIR|PORT|LANG|LANGUAGE|TZ|LD_LIBRARY_PATH|OMP_NUM_THREADS|LC_\w+)$/);
    expect(Object.values(env).join("\n")).not.toMatch(/platform-secret|hearth-w:|redis:\/\//);
    expect(uidOf(worker.enginePid)).toBe(NOBODY_UID);
    const home = statSync(env.HOME!);
    expect(env.HOME).toMatch(/hearth-engine-/);
    expect({ uid: home.uid, mode: home.mode & 0o777 }).toEqual({ uid: NOBODY_UID, mode: 0o700 });
    // One process group, led by the worker: what the provider kills once the worker is gone.
    expect(statFields(worker.workerPid)[2]).toBe(String(worker.workerPid));
    expect(statFields(worker.enginePid)[2]).toBe(String(worker.workerPid));
  });

  it("the worker's Redis credential runs its endpoint's jobs and gets NOPERM on another endpoint's keys and channels", async () => {
    const queue = new Queue(keys.queueName(endpointId), { connection: redis, prefix });
    try {
      const now = Date.now();
      const data: JobData = { endpointId, tenantId: "t-priv", input: { prompt: "Hi", sampling_params: { max_tokens: 3, temperature: 0 } }, executionTimeoutMs: 60_000, lowPriority: false, submittedAt: now, expiresAt: now + 600_000, retentionMs: 60_000, retries: 0 };
      const jobId = randomUUID();
      await queue.add("job", data, { jobId });
      const job = await waitFor(async () => {
        const j = await Job.fromId(queue, jobId);
        return j?.finishedOn ? j : undefined;
      }, 60_000);
      expect(jobResult.parse(job.returnvalue)).toMatchObject({ status: "COMPLETED", output: [{ usage: { output: 3 } }] });
    } finally {
      await queue.close();
    }

    const url = environ(worker.workerPid).REDIS_URL!;
    const other = "ep-someone-else";
    await redis.hset(keys.workers(other), "w-theirs", "{}");
    const as = new Redis(url, { maxRetriesPerRequest: 0, lazyConnect: true });
    try {
      await as.connect();
      expect(await as.hget(keys.workers(endpointId), worker.workerId)).not.toBeNull();
      await expect(as.hgetall(keys.workers(other))).rejects.toThrow(/NOPERM/);
      await expect(as.set(keys.stats(other), "1")).rejects.toThrow(/NOPERM/);
      await expect(as.publish(keys.jobEventsChannel(other), "{}")).rejects.toThrow(/NOPERM/);
      await expect(as.publish(keys.wakeChannel(), "{}")).rejects.toThrow(/NOPERM/);
      await expect(as.subscribe(keys.controlChannel(other))).rejects.toThrow(/NOPERM/);
      await expect(as.scan("0")).rejects.toThrow(/NOPERM/);
      // The offload request list is shared by every endpoint: a worker may push to it, never read it.
      expect(await as.rpush(keys.offloadRequests(), "{}")).toBeGreaterThan(0);
      await expect(as.lrange(keys.offloadRequests(), 0, -1)).rejects.toThrow(/NOPERM/);
      await expect(as.lpop(keys.offloadRequests())).rejects.toThrow(/NOPERM/);
      await redis.del(keys.offloadRequests());
    } finally {
      as.disconnect();
    }
  });

  it("SIGKILL of the worker leaves no engine alive, and its Redis user is deleted", async () => {
    const user = decodeURIComponent(new URL(environ(worker.workerPid).REDIS_URL!).username);
    expect(await aclUsers(redis)).toContain(user);
    process.kill(worker.workerPid, "SIGKILL");
    await waitFor(() => !alive(worker.workerPid) && !alive(worker.enginePid), 20_000);
    await waitFor(async () => !(await aclUsers(redis)).includes(user));
  });
});

describe("a scheduler killed outright", { timeout: 240_000 }, () => {
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  });

  function startScheduler(prefix: string) {
    const child = spawn(process.execPath, ["--import", "tsx", schedulerMain], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: {
        ...process.env,
        ...PLATFORM_SECRETS,
        DATABASE_URL: database.url,
        REDIS_URL: TEST_REDIS_URL,
        HEARTH_REDIS_PREFIX: prefix,
        HEARTH_HANDLER_DIRS: examplesDir,
        HEARTH_SCHEDULER_TICK_MS: "200",
        HEARTH_MODEL_DIRS: modelDir,
      },
    });
    children.push(child);
    let output = "";
    child.stdout?.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    return { child, exited, output: () => output };
  }

  it("its workers drain and stop their engines; the next scheduler removes their Redis users", async () => {
    const prefix = uniquePrefix();
    prefixes.push(prefix);
    const keys = new RedisKeys(prefix);
    const ours = async () => (await aclUsers(redis)).filter((u) => u.startsWith(`${WORKER_USER_PREFIX}${prefixTag(prefix)}:`));
    const { endpointId, modelPath } = await embeddedEndpoint();
    const first = startScheduler(prefix);
    const w = await idleWorker(keys, endpointId, modelPath, first.output);
    for (const name of [...Object.keys(PLATFORM_SECRETS), "DATABASE_URL"]) expect(environ(w.workerPid), name).not.toHaveProperty(name);
    expect(await ours()).toEqual([expect.stringContaining(w.workerId)]);
    // The shared test Redis' default user is open: every process says so at start.
    await waitFor(() => first.output().includes("default user is on without a password"));

    first.child.kill("SIGKILL");
    await first.exited;
    // The worker sees its IPC channel close, drains, stops its engine and exits.
    await waitFor(() => !alive(w.workerPid) && !alive(w.enginePid), 60_000);
    expect(await ours()).toEqual([expect.stringContaining(w.workerId)]); // nobody was left to delete it

    // The next leader (once the dead one's lease lapses) sweeps it, and starts a worker of its own.
    const second = startScheduler(prefix);
    await waitFor(async () => !(await ours()).some((u) => u.includes(w.workerId)), 60_000).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${second.output()}`);
    });
    const next = await idleWorker(keys, endpointId, modelPath, second.output);
    second.child.kill("SIGTERM");
    expect(await second.exited).toBe(0);
    expect(alive(next.enginePid)).toBe(false);
    expect(await ours()).toEqual([]);
  });
});

/**
 * The README's production setup on a test-owned Redis: the default user off, the API and the
 * control plane on a platform user, the scheduler on one that may also manage worker users, each
 * worker on its own. Nothing Hearth sends is refused (Redis' ACL LOG stays empty).
 */
describe("a Redis whose default user is off, with the README's users", { timeout: 180_000 }, () => {
  // The README's rules, with the key pattern widened from `{hearth}:*` to every test prefix.
  const scope = ["~{hearth-test-*", "&{hearth-test-*"];
  const PLATFORM = ["reset", "on", ...scope, "+@all", "-@dangerous", "+info"];
  const SCHEDULER = [...PLATFORM, "+acl|setuser", "+acl|deluser", "+acl|users"];
  const password = randomBytes(24).toString("hex");

  it("runs a job through the API, the scheduler, a worker and the control plane, and Redis refuses none of their commands", async () => {
    const server = await startOwnRedis({ aof: false });
    const cleanups: Array<() => Promise<unknown>> = [() => server.destroy()];
    try {
      const boot = new Redis(server.url);
      await boot.call("ACL", "SETUSER", "hearth-platform", ...PLATFORM, `>${password}`);
      await boot.call("ACL", "SETUSER", "hearth-scheduler", ...SCHEDULER, `>${password}`);
      await boot.call("ACL", "SETUSER", "test-admin", "on", "~*", "&*", "+@all", `>${password}`);
      await boot.call("ACL", "SETUSER", "default", "off");
      boot.disconnect();
      const as = (user: string) => server.url.replace("redis://", `redis://${user}:${password}@`);
      const admin = new Redis(as("test-admin"));
      cleanups.push(async () => admin.disconnect());
      await admin.acl("LOG", "RESET");

      const stack = await startStack({ redisUrl: as("hearth-scheduler"), control: false });
      cleanups.unshift(() => stack.close());
      const control = await spawnControl({ databaseUrl: stack.databaseUrl, redisUrl: as("hearth-platform"), redisPrefix: stack.redisPrefix });
      cleanups.unshift(() => control.kill("SIGTERM"));
      const adminToken = "privilege-admin-token-0123456789";
      const api = await spawnApi({ databaseUrl: stack.databaseUrl, redisUrl: as("hearth-platform"), redisPrefix: stack.redisPrefix, handlerDirs: [examplesDir], adminToken });
      cleanups.unshift(() => api.kill("SIGTERM"));
      const call = apiClient(api.url);

      const tenant = await call("POST", "/admin/tenants", { key: adminToken, body: { name: "prod" } });
      expect(tenant.status).toBe(200);
      const key = tenant.body.apiKey as string;
      // The spawned API bills as production does (HEARTH_BILLING_MODE=enforce): the tenant needs
      // credit, whose cached balance the API writes under its own Redis user.
      const credit = await call("POST", `/admin/tenants/${tenant.body.id as string}/credits`, { key: adminToken, body: { amountMicros: 1_000_000, reason: "test" } });
      expect(credit.status).toBe(200);
      const ep = await call("POST", "/api/v1/endpoints", { key, body: { name: "echo", engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 1 } });
      expect(ep.status).toBe(200);
      const endpointId = ep.body.id as string;
      const done = await call("POST", `/v2/${endpointId}/runsync?wait=60000`, { key, body: { input: { hello: "acl" } } });
      expect(done.body).toMatchObject({ status: "COMPLETED" });
      // The worker ran it as its own user; the control plane recorded it.
      expect((await admin.call("ACL", "USERS")) as string[]).toEqual(expect.arrayContaining([expect.stringMatching(new RegExp(`^hearth-w:.*:${endpointId}:`))]));
      await waitFor(async () => (await stack.sql<{ status: string }[]>`select status from jobs where id = ${done.body.id as string}`)[0]?.status === "COMPLETED");

      // The one refusal is expected: the persistence check tries CONFIG GET, which these users are not
      // given (it would show requirepass), and falls back to INFO persistence.
      const refused = ((await admin.acl("LOG")) as unknown[][]).map((entry) => ({ user: entry[entry.indexOf("username") + 1], object: entry[entry.indexOf("object") + 1] }));
      expect(refused.filter((r) => r.object !== "config|get")).toEqual([]);
      // The processes found the default user closed: no warning, and no failed check.
      expect(api.output()).not.toMatch(/default user/);
      expect(control.output()).not.toMatch(/default user/);
    } finally {
      for (const cleanup of cleanups) await cleanup().catch(() => {});
    }
  });
});
