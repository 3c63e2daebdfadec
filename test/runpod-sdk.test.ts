import { existsSync, readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import runpodSdk from "runpod-sdk";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { examplesDir, fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

/**
 * Hearth driven by RunPod's own JavaScript client, unchanged but for `baseUrl`: the proof that a
 * RunPod user's code runs against Hearth as it is.
 */
describe("runpod-sdk against Hearth", () => {
  let stack: Stack;
  let runpod: ReturnType<typeof runpodSdk>;
  let echoEp: string;
  let sleepEp: string;
  let streamEp: string;
  let idleEp: string;
  let tmp: string;

  beforeAll(async () => {
    stack = await startStack();
    tmp = await mkdtemp(join(tmpdir(), "hearth-sdk-"));
    const key = await stack.tenant("sdk");
    // workersMin keeps one warm worker per endpoint, so the client's own timeouts (3 s on /run, /status…) are never near.
    echoEp = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 1 });
    sleepEp = await stack.endpoint(key, { engine: { kind: "handler", module: join(fixturesDir, "sleep.mjs") }, workersMin: 1 });
    streamEp = await stack.endpoint(key, { engine: { kind: "handler", module: join(fixturesDir, "stream-slow.mjs") }, workersMin: 1 });
    idleEp = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMax: 0 });
    runpod = runpodSdk(key, { baseUrl: `${stack.api.url}/v2` });
    for (const ep of [echoEp, sleepEp, streamEp]) {
      await waitFor(async () => (await runpod.endpoint(ep)!.health()).workers.idle === 1);
    }
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("run, then status polling until COMPLETED", async () => {
    const ep = runpod.endpoint(echoEp)!;
    const started = await ep.run({ input: { prompt: "hello" } });
    expect(started).toMatchObject({ id: expect.any(String), status: "IN_QUEUE" });
    const done = await waitFor(async () => {
      // The SDK's types omit fields it passes through; read the object as it arrives.
      const s = (await ep.status(started.id)) as Record<string, unknown>;
      return s.completed ? s : undefined;
    });
    expect(done).toMatchObject({ id: started.id, status: "COMPLETED", succeeded: true, output: { echo: { prompt: "hello" } } });
    expect(done.delayTime).toEqual(expect.any(Number));
    expect(done.executionTime).toEqual(expect.any(Number));
    expect(done.workerId).toMatch(/^w-/);
  });

  it("runSync returns the finished job", async () => {
    const r = await runpod.endpoint(echoEp)!.runSync({ input: { n: 1 } });
    expect(r).toMatchObject({ status: "COMPLETED", completed: true, succeeded: true, output: { echo: { n: 1 } } });
  });

  it("runSync that outlasts its wait finishes through status-sync", async () => {
    const urls: string[] = [];
    const realFetch = globalThis.fetch;
    const spy = vi.spyOn(globalThis, "fetch").mockImplementation((input, init) => {
      urls.push(String(input instanceof Request ? input.url : input));
      return realFetch(input, init);
    });
    try {
      // wait=2000 on /runsync; the job takes 3000, so the client must go on with /status-sync.
      const r = await runpod.endpoint(sleepEp)!.runSync({ input: { ms: 3000 } }, 2000);
      expect(r).toMatchObject({ status: "COMPLETED", completed: true, output: { slept: 3000 } });
      expect(urls[0]).toMatch(/\/runsync\?wait=2000$/);
      expect(urls.slice(1).length).toBeGreaterThan(0);
      for (const u of urls.slice(1)) expect(u).toContain(`/status-sync/${r.id}?wait=`);
    } finally {
      spy.mockRestore();
    }
  });

  it("stream yields every chunk of a generator handler exactly once, in order", async () => {
    const ep = runpod.endpoint(streamEp)!;
    const { id } = await ep.run({ input: { count: 25, delayMs: 15 } });
    const chunks: unknown[] = [];
    for await (const chunk of ep.stream(id)) chunks.push(chunk);
    expect(chunks).toEqual(Array.from({ length: 25 }, (_, i) => ({ output: { i } })));
    expect((await ep.status(id)).status).toBe("COMPLETED");
  });

  it("cancel stops a running job: the handler sees the abort", async () => {
    const ep = runpod.endpoint(sleepEp)!;
    const marker = join(tmp, "aborted");
    const { id } = await ep.run({ input: { ms: 60_000, abortMarker: marker } });
    await waitFor(async () => (await ep.status(id)).status === "IN_PROGRESS");
    const cancelled = await ep.cancel(id);
    expect(cancelled).toMatchObject({ id, status: "CANCELLED" });
    await waitFor(() => existsSync(marker));
    expect(readFileSync(marker, "utf8")).toMatch(/cancel/i);
    expect((await ep.status(id)).status).toBe("CANCELLED");
  });

  it("health reports all job and worker counters", async () => {
    const h = await runpod.endpoint(echoEp)!.health();
    expect(h.jobs.completed).toBeGreaterThanOrEqual(2);
    expect(h.jobs).toMatchObject({ inProgress: 0, inQueue: 0, failed: 0, retried: 0 });
    expect(h.workers).toEqual({ idle: 1, initializing: 0, ready: 1, running: 0, throttled: 0, unhealthy: 0, paused: 0 });
  });

  it("purgeQueue removes queued jobs", async () => {
    const ep = runpod.endpoint(idleEp)!;
    await ep.run({ input: 1 });
    await ep.run({ input: 2 });
    expect(await ep.purgeQueue()).toEqual({ removed: 2, status: "completed" });
    expect((await ep.health()).jobs.inQueue).toBe(0);
  });
});
