import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { connectRedis } from "../core/redis/connect.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { workerHeartbeat } from "../core/contracts/worker-state.ts";
import { newWorkerId } from "../core/ids/random-id.ts";
import { LocalProvider, type LocalProviderOptions } from "../scheduler/providers/local-provider.ts";
import type { WorkerSpec } from "../scheduler/providers/provider.ts";
import { describeProviderConformance } from "./provider-conformance.ts";
import { TEST_REDIS_URL, clearPrefix, uniquePrefix, waitFor } from "./support/services.ts";

const echoModule = fileURLToPath(new URL("../images/handler/examples/echo.mjs", import.meta.url));
const prefix = uniquePrefix();
const keys = new RedisKeys(prefix);
let redis: Redis;
let scratch: string;

beforeAll(() => {
  redis = connectRedis(TEST_REDIS_URL);
  scratch = mkdtempSync(join(tmpdir(), "hearth-prestart-"));
});
afterAll(async () => {
  await clearPrefix(redis, prefix);
  await redis.quit();
  rmSync(scratch, { recursive: true, force: true });
});

const options = (over: Partial<LocalProviderOptions> = {}): LocalProviderOptions => ({
  redisUrl: TEST_REDIS_URL,
  redisPrefix: prefix,
  handlerDirs: [scratch, fileURLToPath(new URL("../images/handler/examples", import.meta.url))],
  workerLockMs: 5000,
  output: "silent",
  closeGraceMs: 20_000,
  prestarted: 1,
  ...over,
});

const spec = (over: Partial<WorkerSpec> = {}): WorkerSpec => ({
  workerId: newWorkerId(),
  endpointId: "ep-prestart",
  engine: { kind: "handler", module: echoModule },
  env: { HEARTH_HEARTBEAT_MS: "200", HEARTH_DRAIN_TIMEOUT_MS: "5000" },
  executionTimeoutMs: 60_000,
  ...over,
});

/** This process's children that run the worker's build: spares and workers alike. */
function workerChildren(): number[] {
  let out = "";
  try {
    out = execFileSync("ps", ["-o", "pid=,args=", "--ppid", String(process.pid)], { encoding: "utf8" });
  } catch {
    return []; // ps exits 1 when there is no child at all
  }
  return out
    .split("\n")
    .filter((l) => l.includes("dist/worker/main.js"))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

async function idle(s: WorkerSpec): Promise<void> {
  await waitFor(async () => {
    const raw = await redis.hget(keys.workers(s.endpointId), s.workerId);
    return raw !== null && workerHeartbeat.parse(JSON.parse(raw)).state === "idle";
  }, 30_000);
}

// Every behaviour a provider promises holds when its workers come from the prestarted pool.
describeProviderConformance("local, prestarted", () => new LocalProvider(options()), spec);

describe("prestarted workers", () => {
  const open: LocalProvider[] = [];
  const provider = (over: Partial<LocalProviderOptions> = {}) => {
    const p = new LocalProvider(options(over));
    open.push(p);
    return p;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((p) => p.close()));
    await waitFor(() => workerChildren().length === 0, 20_000);
  });

  it("a start takes the booted spare, which becomes the worker of the assigned environment alone; its replacement boots once it is ready", async () => {
    // A handler that says, as it loads, what its process's environment holds.
    writeFileSync(join(scratch, "env-echo.mjs"), "console.log(JSON.stringify({ mine: process.env.MY_SETTING ?? null, prestartMarker: process.env.HEARTH_WORKER_PRESTARTED ?? null, endpoint: process.env.HEARTH_ENDPOINT_ID ?? null }));\nexport default async (job) => job.input;\n");
    const lines: string[] = [];
    const p = provider({ onOutput: (_w, _s, line) => void lines.push(line) });
    await waitFor(() => workerChildren().length === 1);
    const [sparePid] = workerChildren();
    // Long enough that phases counted from the spare's own boot could not pass for a start's.
    await new Promise((r) => setTimeout(r, 2000));
    const s = spec({ engine: { kind: "handler", module: join(scratch, "env-echo.mjs") }, env: { HEARTH_HEARTBEAT_MS: "200", MY_SETTING: "for this endpoint" } });
    await p.start(s);
    await idle(s);
    // The worker is the spare's process: nothing was spawned for it.
    const boot = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.phase === "boot");
    expect(boot).toMatchObject({ pid: sparePid, workerId: s.workerId, endpointId: s.endpointId });
    const said = lines.find((l) => l.includes("for this endpoint"));
    expect(said).toBeDefined();
    expect(said).toContain('\\"prestartMarker\\":null');
    expect(said).toContain(`\\"endpoint\\":\\"${s.endpointId}\\"`);
    // Its session's cold start (in the log) says so, and counts from the assignment, not from the boot before it.
    const coldStart = await waitFor(async () => {
      const entries = (await redis.xrange(keys.log(s.endpointId), "-", "+")) as [string, string[]][];
      const text = entries.flatMap(([, fields]) => fields).find((v) => v.includes(s.workerId) && v.includes('"coldStart"'));
      return text === undefined ? undefined : (JSON.parse(text) as { coldStart: { prestarted?: boolean; processStartMs?: number } }).coldStart;
    });
    expect(coldStart.prestarted).toBe(true);
    expect(coldStart.processStartMs).toBeLessThan(2000);
    // Ready, so the next spare boots: two worker processes, the worker and a new spare.
    await waitFor(() => workerChildren().length === 2, 20_000);
    expect(workerChildren()).toContain(sparePid);
  });

  it("spawns afresh a worker whose environment differs from the spare's in a variable Node reads at its start, and keeps the spare", async () => {
    const p = provider({ inheritEnv: { ...process.env, NODE_ENV: "test" } });
    await waitFor(() => workerChildren().length === 1);
    const [sparePid] = workerChildren();
    const s = spec({ env: { HEARTH_HEARTBEAT_MS: "200", NODE_ENV: "production" } });
    await p.start(s);
    await idle(s);
    const children = workerChildren();
    expect(children).toHaveLength(2);
    expect(children).toContain(sparePid); // still waiting, unassigned
  });

  it("a spare SIGKILLed while it waits is replaced, and the next start takes the replacement", async () => {
    const lines: string[] = [];
    const p = provider({ onOutput: (_w, _s, line) => void lines.push(line) });
    await waitFor(() => workerChildren().length === 1);
    const [killed] = workerChildren();
    process.kill(killed!, "SIGKILL");
    const replacement = await waitFor(() => {
      const pids = workerChildren();
      return pids.length === 1 && pids[0] !== killed ? pids[0] : undefined;
    }, 20_000);
    const s = spec();
    await p.start(s);
    await idle(s);
    const boot = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.phase === "boot");
    expect(boot).toMatchObject({ pid: replacement, workerId: s.workerId });
  });

  it("a spare ends with its provider: closed, nothing is left", async () => {
    const p = provider();
    await waitFor(() => workerChildren().length === 1);
    await p.close();
    await waitFor(() => workerChildren().length === 0, 10_000);
  });

  it("with prestarted 0 no process is booted ahead of demand", async () => {
    provider({ prestarted: 0 });
    await new Promise((r) => setTimeout(r, 1500));
    expect(workerChildren()).toEqual([]);
  });
});
