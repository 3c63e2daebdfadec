import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examplesDir, startStack, STACK_ADMIN_TOKEN, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
const HOST_CAP = 3;

/** The scheduler's host cap and the tenant's maxWorkers, with real worker processes. */
describe("worker capacity: the host's cap and the tenant's maxWorkers", () => {
  let stack: Stack;
  /** The most workers the provider ran at any sample: the cap is a safety property, sampled every 50 ms. */
  let peak = 0;
  let sampler: NodeJS.Timeout;

  beforeAll(async () => {
    stack = await startStack({ hostWorkerCap: HOST_CAP, tickMs: 200 });
    sampler = setInterval(() => (peak = Math.max(peak, stack.provider.list().length)), 50);
  });
  afterAll(async () => {
    clearInterval(sampler);
    await stack?.close();
  });

  const health = async (key: string, ep: string) => (await stack.call("GET", `/v2/${ep}/health`, { key })).body;

  it("never runs more workers than the host's cap under a burst of endpoints, and counts the rest as throttled", async () => {
    const key = await stack.tenant("burst");
    const eps: string[] = [];
    for (let i = 0; i < 8; i++) eps.push(await stack.endpoint(key, { engine: echo, workersMin: 1, workersMax: 1 }));

    await waitFor(() => stack.provider.list().length === HOST_CAP, 30_000);
    const waiting = await waitFor(async () => {
      const hs = await Promise.all(eps.map((ep) => health(key, ep)));
      const throttled = hs.reduce((n, h) => n + h.workers.throttled, 0);
      return throttled === eps.length - HOST_CAP ? hs : undefined;
    }, 30_000);
    for (const h of waiting.filter((h) => h.workers.throttled > 0)) expect(h.waitReason).toBe("no_capacity");
    // A few more scheduler ticks: still at the cap.
    const ticks = stack.scheduler.tick().then(() => stack.scheduler.tick()).then(() => stack.scheduler.tick());
    await ticks;
    expect(peak).toBe(HOST_CAP);

    // Freed capacity goes to the endpoints that waited.
    for (const ep of eps.slice(0, HOST_CAP)) await stack.call("DELETE", `/api/v1/endpoints/${ep}`, { key });
    await waitFor(async () => {
      const hs = await Promise.all(eps.slice(HOST_CAP).map((ep) => health(key, ep)));
      return hs.reduce((n, h) => n + h.workers.throttled, 0) === eps.length - 2 * HOST_CAP;
    }, 60_000);
    expect(peak).toBe(HOST_CAP);
    for (const ep of eps.slice(HOST_CAP)) await stack.call("DELETE", `/api/v1/endpoints/${ep}`, { key });
    await waitFor(() => stack.provider.list().length === 0, 60_000);
  });

  it("holds a tenant to its maxWorkers across its endpoints, with waitReason quota", async () => {
    const created = await stack.call("POST", "/admin/tenants", { key: STACK_ADMIN_TOKEN, body: { name: "capped" } });
    const key = created.body.apiKey as string;
    expect((await stack.call("PUT", `/admin/tenants/${created.body.id}/limits`, { key: STACK_ADMIN_TOKEN, body: { maxWorkers: 1 } })).status).toBe(200);
    const a = await stack.endpoint(key, { engine: echo, workersMin: 1, workersMax: 1 });
    const b = await stack.endpoint(key, { engine: echo, workersMin: 1, workersMax: 1 });

    const hs = await waitFor(async () => {
      const both = [await health(key, a), await health(key, b)];
      const ready = both.reduce((n, h) => n + h.workers.idle + h.workers.running, 0);
      const throttled = both.reduce((n, h) => n + h.workers.throttled, 0);
      return ready === 1 && throttled === 1 ? both : undefined;
    }, 30_000);
    expect(hs.find((h) => h.workers.throttled === 1)?.waitReason).toBe("quota");
    await stack.scheduler.tick();
    expect(stack.provider.list().length).toBe(1);
  });
});
