import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { startEmbeddedEngine, type EmbeddedEngineProcess } from "./support/embedded-engine-process.ts";
import { startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { groupMembers } from "../scheduler/providers/process-group.ts";
import { pidsWithEnv, processState } from "./support/process-probe.ts";

const completion = (base: string) =>
  fetch(`${base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Hello", max_tokens: 2, temperature: 0 }) });

describe("embedded engine: sleep mode (vLLM's /sleep and /wake_up)", () => {
  let engine: EmbeddedEngineProcess;
  beforeAll(async () => {
    engine = await startEmbeddedEngine({ parallel: 1, ctxSize: 256 });
  }, 60_000);
  afterAll(async () => {
    await engine?.stop();
  });

  it("unloads the model on /sleep (requests get 503 until /wake_up), reloads it on /wake_up; both are idempotent", async () => {
    expect((await completion(engine.base)).status).toBe(200);
    const post = (path: string) => fetch(`${engine.base}${path}`, { method: "POST" }).then(async (r) => ({ status: r.status, body: await r.json() }));

    expect(await post("/sleep")).toEqual({ status: 200, body: { is_sleeping: true } });
    expect(await post("/sleep")).toEqual({ status: 200, body: { is_sleeping: true } });
    expect(await (await fetch(`${engine.base}/is_sleeping`)).json()).toEqual({ is_sleeping: true });
    const asleep = await completion(engine.base);
    expect(asleep.status).toBe(503);
    expect(await asleep.json()).toMatchObject({ error: { type: "server_error", code: "engine_asleep" } });
    // Alive all along: the worker's supervisor must not restart it.
    expect((await fetch(`${engine.base}/health`)).status).toBe(200);

    expect(await post("/wake_up")).toEqual({ status: 200, body: { is_sleeping: false } });
    expect(await post("/wake_up")).toEqual({ status: 200, body: { is_sleeping: false } });
    const awake = await completion(engine.base);
    expect(awake.status).toBe(200);
    expect(((await awake.json()) as { choices: unknown[] }).choices).toHaveLength(1);
  });
});

describe("embedded engine in the snapshot pool", () => {
  let stack: Stack;
  let key: string;
  let dir: string;
  let model: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "hearth-sleep-"));
    await chmod(dir, 0o755); // the engine runs as an unprivileged user, which must reach the model
    model = ensureTinyLlamaFile(join(dir, "tiny-llama.gguf"));
    stack = await startStack({ tickMs: 200, pausedStateDir: dir, modelDirs: [dir] });
    key = await stack.tenant("sleepy");
  }, 60_000);
  afterAll(async () => {
    await stack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("puts the engine to sleep and pauses its whole group on scale-down; the next job wakes the same engine process", async () => {
    const ep = await stack.endpoint(key, {
      engine: { kind: "openai", profile: "embedded", model: `file://${model}`, args: { threads: 1, "ctx-size": 256 }, concurrency: 1 },
      idleTimeout: 1,
      workersMax: 1,
      flashboot: true,
    });
    const job = async () => {
      const r = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { prompt: "Hello", sampling_params: { max_tokens: 2, temperature: 0 } } } });
      expect(r.status).toBe(200);
      expect(r.body.status).toBe("COMPLETED");
      return r.body as { id: string };
    };
    await job();
    const [worker] = stack.provider.list().filter((w) => w.endpointId === ep);
    await waitFor(() => stack.provider.list().some((w) => w.workerId === worker!.workerId && w.state === "paused"), 30_000);
    const workerPid = pidsWithEnv("HEARTH_WORKER_ID", worker!.workerId).sort((a, b) => a - b)[0]!;
    const group = groupMembers(workerPid);
    // The worker and its engine process: both stopped.
    expect(group.length).toBeGreaterThanOrEqual(2);
    for (const pid of group) expect(processState(pid)).toBe("T");
    const logs = async () => JSON.stringify((await stack.call("GET", `/api/v1/endpoints/${ep}/workers/${worker!.workerId}/logs`, { key })).body);
    expect(await waitFor(async () => ((await logs()).includes('\\"msg\\":\\"asleep\\"') || (await logs()).includes('"asleep"') ? true : undefined))).toBe(true);

    const second = await job();
    const status = (await stack.call("GET", `/v2/${ep}/status/${second.id}`, { key })).body;
    expect(status.workerId).toBe(worker!.workerId);
    // The same engine process, awake again (its model reloaded).
    expect(groupMembers(workerPid).sort()).toEqual(group.sort());
    expect(await waitFor(async () => ((await logs()).includes("awake") ? true : undefined))).toBe(true);
  }, 90_000);
});
