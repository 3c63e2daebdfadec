import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examplesDir, fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { groupMembers } from "../scheduler/providers/process-group.ts";
import { processState } from "./support/process-probe.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { workerPayloads } from "./support/event-log-probe.ts";

/*
 * The snapshot pool (FlashBoot) with real worker processes: an idle worker of a flashboot endpoint
 * is paused on scale-down (its whole process group stopped), the next job resumes it, and the same
 * process serves it; paused time is not billed; the pool's memory budget evicts.
 */
describe("snapshot pool", () => {
  let stack: Stack;
  let key: string;
  let stateDir: string;

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), "hearth-paused-"));
    stack = await startStack({ tickMs: 200, pausedStateDir: stateDir });
    key = await stack.tenant("pool");
  });
  afterAll(async () => {
    await stack?.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
  const health = async (ep: string) => (await stack.call("GET", `/v2/${ep}/health`, { key })).body;
  const runsync = async (ep: string, input: unknown) => {
    const r = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input } });
    expect(r.status).toBe(200);
    return r.body as { id: string; status: string; output?: unknown; workerId?: string };
  };
  const pausedOf = (ep: string) => stack.provider.list().filter((w) => w.endpointId === ep && w.state === "paused");

  it("pauses an idle worker on scale-down (group stopped, `paused` in /health) and resumes that same process for the next job", async () => {
    const ep = await stack.endpoint(key, { engine: echo, idleTimeout: 1, workersMax: 1, flashboot: true });
    const first = await runsync(ep, { n: 1 });
    expect(first).toMatchObject({ status: "COMPLETED", output: { echo: { n: 1 } } });
    const [worker] = stack.provider.list().filter((w) => w.endpointId === ep);
    expect(worker).toBeDefined();

    const [paused] = await waitFor(() => (pausedOf(ep).length === 1 ? pausedOf(ep) : undefined), 20_000);
    expect(paused!.workerId).toBe(worker!.workerId);
    expect(paused!.residentBytes).toBeGreaterThan(1_000_000);
    // The heartbeat said `paused` before the freeze: /health counts it apart, not as unhealthy, even once its beat is old.
    await waitFor(async () => (await health(ep)).workers.paused === 1);
    await new Promise((r) => setTimeout(r, 3500));
    expect((await health(ep)).workers).toMatchObject({ paused: 1, unhealthy: 0, idle: 0, ready: 0 });
    // Every process of the worker's group is stopped (T), and the scheduler does not take it for hung.
    const pid = Number(await pidOf(worker!.workerId));
    const members = groupMembers(pid);
    expect(members.length).toBeGreaterThan(0);
    for (const m of members) expect(processState(m)).toBe("T");

    const second = await runsync(ep, { n: 2 });
    expect(second).toMatchObject({ status: "COMPLETED", output: { echo: { n: 2 } } });
    const status = (await stack.call("GET", `/v2/${ep}/status/${second.id}`, { key })).body;
    expect(status.workerId).toBe(worker!.workerId); // resumed, not cold-started
    expect(processState(pid)).not.toBe("T");
    expect(stack.provider.list().filter((w) => w.endpointId === ep)).toHaveLength(1);

    // Paused again after the next idle spell; the log has the pause and the resume, and billing leaves the pause out.
    await waitFor(() => pausedOf(ep).length === 1, 20_000);
    const states = await workerStates(ep, worker!.workerId);
    expect(states).toEqual(expect.arrayContaining(["requested", "idle", "paused"]));
    const pausedAt = states.indexOf("paused");
    expect(states.slice(pausedAt + 1)).toContain("idle");
    const session = await waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/billing/sessions/${worker!.workerId}`, { key });
      return r.status === 200 && (r.body.pausedMs as number) > 3000 ? r.body : undefined;
    }, 20_000);
    expect(session.pausedMs).toBeGreaterThan(3000);
  });

  it("a worker with a job in flight is never paused; a job's lock does not lapse", async () => {
    const ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(fixturesDir, "sleep.mjs") }, idleTimeout: 1, workersMax: 1, flashboot: true });
    const r = await runsync(ep, { ms: 2500 });
    expect(r.status).toBe("COMPLETED");
    // It was busy past the idle timeout and is paused only after: the job completed once, on one worker.
    await waitFor(() => pausedOf(ep).length === 1, 20_000);
    expect((await health(ep)).jobs).toMatchObject({ completed: 1, failed: 0, retried: 0 });
  });

  async function pidOf(workerId: string): Promise<number | undefined> {
    const { pidsWithEnv } = await import("./support/process-probe.ts");
    return pidsWithEnv("HEARTH_WORKER_ID", workerId).sort((a, b) => a - b)[0];
  }

  async function workerStates(ep: string, workerId: string): Promise<string[]> {
    return (await workerPayloads(stack.redis, new RedisKeys(stack.redisPrefix).log(ep))).filter((p) => p.workerId === workerId).map((p) => p.state!);
  }

});
