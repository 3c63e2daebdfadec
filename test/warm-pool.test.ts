import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examplesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { workerPayloads } from "./support/event-log-probe.ts";

/*
 * Warm pools (`workersStandby`) through the API, and the snapshot pool's memory budget, with real
 * worker processes. The budget here is 1 byte: every paused worker is over it and is evicted.
 */
describe("warm pool and snapshot pool limits", () => {
  let stack: Stack;
  let key: string;
  let stateDir: string;

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "hearth-paused-"));
    stack = await startStack({ tickMs: 200, pausedStateDir: stateDir, pausedPool: { memoryBytes: 1, maxAgeMs: 3_600_000 } });
    key = await stack.tenant("warm");
  });
  afterAll(async () => {
    await stack?.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };

  it("workersStandby: created, read back, changed with PATCH; defaults to 0; bad values are 400 with the field's path", async () => {
    const ep = await stack.endpoint(key, { engine: echo, workersMax: 0, workersStandby: 2 });
    expect((await stack.call("GET", `/api/v1/endpoints/${ep}`, { key })).body).toMatchObject({ workersStandby: 2 });
    const patched = await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key, body: { workersStandby: 1 } });
    expect(patched.status).toBe(200);
    expect((await stack.call("GET", `/api/v1/endpoints/${ep}`, { key })).body).toMatchObject({ workersStandby: 1 });
    const plain = await stack.endpoint(key, { engine: echo, workersMax: 0 });
    expect((await stack.call("GET", `/api/v1/endpoints/${plain}`, { key })).body).toMatchObject({ workersStandby: 0 });

    for (const bad of [-1, 101, 1.5, "1", null, 1e300, "\u0000", "\ud800"]) {
      const created = await stack.call("POST", "/api/v1/endpoints", { key, body: { name: "bad", engine: echo, workersStandby: bad } });
      expect(created.status, JSON.stringify(bad)).toBe(400);
      expect(JSON.stringify(created.body)).toContain("workersStandby");
      const changed = await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key, body: { workersStandby: bad } });
      expect(changed.status, JSON.stringify(bad)).toBe(400);
      expect(JSON.stringify(changed.body)).toContain("workersStandby");
    }
  });

  it("keeps a standby worker booted without any job, and does not stop it for idleness (flashboot off)", async () => {
    const ep = await stack.endpoint(key, { engine: echo, workersMax: 2, workersStandby: 1, idleTimeout: 1, flashboot: false });
    const health = async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body;
    await waitFor(async () => (await health()).workers.idle === 1, 20_000);
    const [w] = stack.provider.list().filter((x) => x.endpointId === ep);
    await new Promise((r) => setTimeout(r, 2500)); // past the idle timeout
    expect(stack.provider.list().filter((x) => x.endpointId === ep).map((x) => x.workerId)).toEqual([w!.workerId]);
    const r = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { hi: 1 } } });
    expect(r.body).toMatchObject({ status: "COMPLETED", output: { echo: { hi: 1 } } });
    expect((await stack.call("GET", `/v2/${ep}/status/${r.body.id}`, { key })).body.workerId).toBe(w!.workerId);
  });

  it("evicts a paused worker that does not fit in HEARTH_PAUSED_MEMORY_BYTES: it exits with why", async () => {
    const ep = await stack.endpoint(key, { engine: echo, workersMax: 1, idleTimeout: 1, flashboot: true });
    const r = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: {} } });
    expect(r.body.status).toBe("COMPLETED");
    const workerId = (await stack.call("GET", `/v2/${ep}/status/${r.body.id}`, { key })).body.workerId as string;
    const keys = new RedisKeys(stack.redisPrefix);
    const states = await waitFor(async () => {
      const mine = (await workerPayloads(stack.redis, keys.log(ep))).filter((p) => p.workerId === workerId);
      return mine.some((p) => p.state === "exited" && p.by === "scheduler") ? mine : undefined;
    }, 30_000);
    expect(states.map((s) => s.state)).toEqual(expect.arrayContaining(["paused", "draining", "exited"]));
    expect(states.find((s) => s.state === "draining")?.reason).toBe("evicted from the snapshot pool");
    expect(stack.provider.list().filter((x) => x.endpointId === ep)).toEqual([]);
  });
});
