import type { LogLine } from "../core/log/process-log.ts";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis/connect.ts";
import { builtEntryPath } from "../core/build/built-entry.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { LocalProvider, type LocalProviderOptions } from "../scheduler/providers/local-provider.ts";
import type { ProvidedWorker, WorkerSpec } from "../scheduler/providers/provider.ts";
import { newWorkerId } from "../core/ids/random-id.ts";
import { describeProviderConformance } from "./provider-conformance.ts";
import { groupMembers } from "../scheduler/providers/process-group.ts";
import { TEST_REDIS_URL, clearPrefix, createTestDatabase, uniquePrefix, waitFor } from "./support/services.ts";

const echoModule = fileURLToPath(new URL("../images/handler/examples/echo.mjs", import.meta.url));
const handlerDir = fileURLToPath(new URL("../images/handler/examples", import.meta.url));

let db: { url: string; drop: () => Promise<void> };
let redis: Redis;
const prefix = uniquePrefix();
const keys = new RedisKeys(prefix);

beforeAll(async () => {
  db = await createTestDatabase();
  redis = connectRedis(TEST_REDIS_URL);
});
afterAll(async () => {
  await clearPrefix(redis, prefix);
  await redis.quit();
  await db.drop();
});

const options = (over: Partial<LocalProviderOptions> = {}): LocalProviderOptions => ({
  redisUrl: TEST_REDIS_URL,
  redisPrefix: prefix,
  handlerDirs: [handlerDir],
  workerLockMs: 5000,
  output: "silent",
  closeGraceMs: 20_000,
  ...over,
});

const echoSpec = (): WorkerSpec => ({
  workerId: newWorkerId(),
  endpointId: "ep-conformance",
  engine: { kind: "handler", module: echoModule },
  env: { HEARTH_HEARTBEAT_MS: "200", HEARTH_DRAIN_TIMEOUT_MS: "5000" },
  executionTimeoutMs: 60_000,
});

describeProviderConformance("local", () => new LocalProvider(options()), echoSpec);

describe("local provider", () => {
  const open: LocalProvider[] = [];
  const provider = (over: Partial<LocalProviderOptions> = {}) => {
    const p = new LocalProvider(options(over));
    open.push(p);
    return p;
  };
  let scratch: string;
  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), "hearth-provider-"));
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((p) => p.close()));
    vi.restoreAllMocks();
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("hands the worker its settings: it heartbeats under its id, endpoint and prefix", async () => {
    const p = provider();
    const spec = echoSpec();
    await p.start(spec);
    const hb = await waitFor(async () => {
      const raw = await redis.hget(keys.workers(spec.endpointId), spec.workerId);
      const parsed = raw ? workerHeartbeat.parse(JSON.parse(raw)) : undefined;
      return parsed?.state === "idle" ? parsed : undefined;
    });
    expect(hb).toMatchObject({ id: spec.workerId, endpointId: spec.endpointId });
    await p.stop(spec.workerId, { graceMs: 20_000 });
    // A drained worker takes its heartbeat with it.
    expect(await redis.hget(keys.workers(spec.endpointId), spec.workerId)).toBeNull();
  });

  it("runs workers from the built JavaScript (dist/worker/main.js) with plain node: no TypeScript loader in their command line", async () => {
    const p = provider();
    const spec = echoSpec();
    await p.start(spec);
    await waitFor(async () => {
      const raw = await redis.hget(keys.workers(spec.endpointId), spec.workerId);
      return raw !== null && workerHeartbeat.parse(JSON.parse(raw)).state === "idle";
    });
    // This worker among this process's children, by the id in its environment.
    const children = readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    const pid = children.find((c) => readFileSync(`/proc/${c}/environ`, "utf8").split("\0").includes(`HEARTH_WORKER_ID=${spec.workerId}`));
    expect(pid).toBeDefined();
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    expect(argv).toEqual([process.execPath, builtEntryPath("worker/main.ts")]);
    expect(argv.join(" ")).not.toMatch(/tsx|\.ts\b/);
    expect(argv[1]).toMatch(/\/dist\/worker\/main\.js$/);
  });

  it("turns workers' /metrics on only when asked (even with HEARTH_WORKER_METRICS=on in its own environment): the port is in the heartbeat", async () => {
    const heartbeatOf = async (p: LocalProvider) => {
      const spec = echoSpec();
      await p.start(spec);
      const hb = await waitFor(async () => {
        const raw = await redis.hget(keys.workers(spec.endpointId), spec.workerId);
        const parsed = raw ? workerHeartbeat.parse(JSON.parse(raw)) : undefined;
        return parsed?.state === "idle" ? parsed : undefined;
      });
      await p.stop(spec.workerId, { graceMs: 20_000 });
      return hb;
    };
    const on = await heartbeatOf(provider({ workerMetrics: true }));
    expect(on.metricsPort).toBeGreaterThan(0);
    const off = await heartbeatOf(provider({ inheritEnv: { ...process.env, HEARTH_WORKER_METRICS: "on" } }));
    expect(off.metricsPort).toBeUndefined();
  });

  it("forwards each worker's JSON log lines, which carry its worker id", async () => {
    const lines: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    vi.spyOn(process.stdout, "write").mockImplementation(((chunk: string | Uint8Array, ...rest: never[]) => {
      lines.push(String(chunk));
      return write(chunk, ...rest);
    }) as typeof process.stdout.write);
    const p = provider({ output: "forward" });
    const spec = echoSpec();
    await p.start(spec);
    await waitFor(() => lines.some((l) => l.startsWith("{") && l.includes(`"workerId":"${spec.workerId}"`) && l.includes('"phase":"ready"')));
  });

  it("logs a worker's plain-text lines (a crash's stack, a handler's own writes) with its ids", async () => {
    const entry = join(scratch, "plain-text.mjs");
    writeFileSync(entry, "process.stdout.write('plain words\\n'); process.stderr.write('Error: boom\\n    at x (y.js:1:1)\\n'); process.exit(1);\n");
    const logged: LogLine[] = [];
    const p = provider({ workerEntry: entry, output: "forward", log: (l) => void logged.push(l) });
    const spec = echoSpec();
    await p.start(spec);
    await waitFor(() => logged.length === 3);
    const ids = { msg: "worker output", workerId: spec.workerId, endpointId: spec.endpointId };
    expect(logged).toEqual(
      expect.arrayContaining([
        { ...ids, stream: "stdout", line: "plain words" },
        { ...ids, stream: "stderr", line: "Error: boom" },
        { ...ids, stream: "stderr", line: "    at x (y.js:1:1)" },
      ]),
    );
  });

  it("reports the exit code of a worker that ends on its own", async () => {
    const entry = join(scratch, "exit-3.mjs");
    writeFileSync(entry, "process.exit(3);\n");
    const p = provider({ workerEntry: entry });
    const exits: ProvidedWorker[] = [];
    p.onExit((w) => exits.push(w));
    const spec = echoSpec();
    await p.start(spec);
    await waitFor(() => exits.length === 1);
    expect(exits[0]).toMatchObject({ workerId: spec.workerId, state: "exited", exitCode: 3 });
    expect(p.list()).toEqual([]);
  });

  it("kills a worker that does not exit within the grace period", async () => {
    const entry = join(scratch, "stubborn.mjs");
    const ready = join(scratch, "stubborn.ready");
    writeFileSync(
      entry,
      `import { writeFileSync } from "node:fs";
process.on("SIGTERM", () => {});
process.on("disconnect", () => {});
writeFileSync(${JSON.stringify(ready)}, "1");
setInterval(() => {}, 1000);
`,
    );
    const p = provider({ workerEntry: entry });
    const exits: ProvidedWorker[] = [];
    p.onExit((w) => exits.push(w));
    const spec = echoSpec();
    await p.start(spec);
    // SIGTERM before the handler is installed would end it the ordinary way.
    await waitFor(() => existsSync(ready));
    await p.stop(spec.workerId, { graceMs: 300 });
    expect(exits[0]).toMatchObject({ workerId: spec.workerId, exitCode: 128 + 9 });
  });

  it("kills what is left of a worker's process group when the worker dies: an engine child outliving a SIGKILLed worker is gone", async () => {
    const entry = join(scratch, "with-engine.mjs");
    const pids = join(scratch, "with-engine.pids");
    // The "engine": a child that ignores SIGTERM and SIGHUP, as a stuck engine would, in the worker's group.
    writeFileSync(
      entry,
      `import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
const engine = spawn(process.execPath, ["-e", "process.on('SIGTERM', () => {}); process.on('SIGHUP', () => {}); setInterval(() => {}, 1000)"], { stdio: "ignore" });
engine.unref();
writeFileSync(${JSON.stringify(pids)}, JSON.stringify({ worker: process.pid, engine: engine.pid }));
process.on("disconnect", () => {});
setInterval(() => {}, 1000);
`,
    );
    const p = provider({ workerEntry: entry });
    const exits: ProvidedWorker[] = [];
    p.onExit((w) => exits.push(w));
    await p.start(echoSpec());
    await waitFor(() => existsSync(pids));
    const { worker, engine } = JSON.parse(readFileSync(pids, "utf8")) as { worker: number; engine: number };
    // The worker leads its own group, and its engine is in it.
    expect(groupMembers(worker).sort()).toEqual([worker, engine].sort());
    process.kill(worker, "SIGKILL");
    await waitFor(() => exits.length === 1);
    expect(exits[0]).toMatchObject({ exitCode: 128 + 9 });
    await waitFor(() => groupMembers(worker).length === 0);
    expect(existsSync(`/proc/${engine}/stat`) ? readFileSync(`/proc/${engine}/stat`, "utf8").split(") ")[1]?.[0] : "gone").toMatch(/gone|Z/);
  });
});
