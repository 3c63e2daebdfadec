import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisKeys } from "../core/queue/keys.ts";
import { examplesDir, fixturesDir, STACK_ADMIN_TOKEN, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { readLog } from "./support/event-log-probe.ts";

const ADMIN = STACK_ADMIN_TOKEN;
const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
const sleep = { kind: "handler", module: join(fixturesDir, "sleep.mjs") };

/**
 * HEARTH_BILLING_MODE=enforce end to end: a tenant without credit gets 402 and no worker; credit
 * restores service; at zero balance running jobs finish, idle workers stop (workersMin included)
 * and nothing new starts; the spend per hour holds scale-up only.
 */
describe("billing enforcement", () => {
  let stack: Stack;
  let tenant: { id: string; key: string };

  const health = async (ep: string) => (await stack.call("GET", `/v2/${ep}/health`, { key: tenant.key })).body;
  const requestedWorkers = async (ep: string) =>
    (await readLog(stack.redis, new RedisKeys(stack.redisPrefix).log(ep))).filter((e) => e.event === "hearth:worker" && e.fields.get("d")!.includes('"state":"requested"')).length;
  const credit = async (amountMicros: number) => {
    const r = await stack.call("POST", `/admin/tenants/${tenant.id}/credits`, { key: ADMIN, body: { amountMicros, reason: "test" } });
    expect(r.status).toBe(200);
  };
  /** Brings the balance to exactly zero with an adjustment, as an operator's correction would (no route writes one yet). */
  const zeroBalance = async () => {
    await stack.sql`
      insert into ledger_entries (tenant_id, key, kind, amount_micros, at, reason)
      select ${tenant.id}, ${`adjustment:${tenant.id}:${Date.now()}`}, 'adjustment', -coalesce(sum(amount_micros), 0), now(), 'test: spend it all'
      from ledger_entries where tenant_id = ${tenant.id}`;
    await stack.api.deps.balances.rebuild([tenant.id]);
  };

  beforeAll(async () => {
    stack = await startStack({ billingMode: "enforce" });
    tenant = await stack.tenantWithId("payer");
  }, 60_000);
  afterAll(async () => stack?.close());

  it("a new tenant starts at zero: 402 with the balance, and no worker starts, not even its workersMin", async () => {
    const ep = await stack.endpoint(tenant.key, { engine: echo, workersMin: 1, workersMax: 1 });
    const r = await stack.call("POST", `/v2/${ep}/run`, { key: tenant.key, body: { input: 1 } });
    expect(r.status).toBe(402);
    expect(r.body).toMatchObject({ code: "insufficient_balance", balanceMicros: 0 });
    expect(r.body.error).toMatch(/credit/);
    const sync = await stack.call("POST", `/v2/${ep}/runsync`, { key: tenant.key, body: { input: 1 } });
    expect(sync.status).toBe(402);
    const chat = await stack.call("POST", `/v2/${ep}/openai/v1/chat/completions`, { key: tenant.key, body: { model: "m", messages: [{ role: "user", content: "hi" }] } });
    expect(chat.status).toBe(402);
    expect(chat.body.error.code).toBe("insufficient_balance");
    const held = await waitFor(async () => ((await health(ep)).waitReason === "billing" ? await health(ep) : undefined), 20_000, 100);
    expect(held.workers).toMatchObject({ idle: 0, running: 0, initializing: 0 });
    // Several ticks later still no worker was even requested.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await requestedWorkers(ep)).toBe(0);
    const balance = await stack.call("GET", "/api/v1/billing/balance", { key: tenant.key });
    expect(balance.body).toMatchObject({ balanceMicros: 0, billingMode: "enforce" });
  }, 60_000);

  it("credit restores service at once; at zero balance the running job finishes, idle workers stop, nothing new starts; credit again restores it", async () => {
    await credit(5_000_000);
    const sleepEp = await stack.endpoint(tenant.key, { engine: sleep, workersMin: 1, workersMax: 1, idleTimeout: 600 });
    const sync = await stack.call("POST", `/v2/${sleepEp}/runsync`, { key: tenant.key, body: { input: { ms: 10 } } });
    expect(sync.status).toBe(200);
    expect(sync.body.status).toBe("COMPLETED");
    await waitFor(async () => ((await health(sleepEp)).waitReason === undefined ? true : undefined), 20_000, 100);

    const long = await stack.call("POST", `/v2/${sleepEp}/run`, { key: tenant.key, body: { input: { ms: 3000 } } });
    expect(long.status).toBe(200);
    await waitFor(async () => ((await stack.call("GET", `/v2/${sleepEp}/status/${long.body.id}`, { key: tenant.key })).body.status === "IN_PROGRESS" ? true : undefined), 20_000, 50);
    await zeroBalance();

    const refused = await waitFor(async () => {
      const r = await stack.call("POST", `/v2/${sleepEp}/run`, { key: tenant.key, body: { input: { ms: 1 } } });
      return r.status === 402 ? r : undefined;
    }, 10_000, 100);
    // Zero, or below once the running session's next minute (or settlement) is charged meanwhile.
    expect(refused.body.balanceMicros).toBeLessThanOrEqual(0);
    // The job already running finishes.
    const done = await waitFor(async () => {
      const s = await stack.call("GET", `/v2/${sleepEp}/status/${long.body.id}`, { key: tenant.key });
      return s.body.status === "COMPLETED" ? s.body : undefined;
    }, 30_000, 100);
    expect(done.output).toEqual({ slept: 3000 });
    // Then its worker, idle, stops although the endpoint keeps one at minimum; none replaces it.
    const requestedBefore = await requestedWorkers(sleepEp);
    await waitFor(async () => {
      const h = await health(sleepEp);
      return h.waitReason === "billing" && h.workers.idle + h.workers.running + h.workers.initializing === 0 ? true : undefined;
    }, 30_000, 100);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await requestedWorkers(sleepEp)).toBe(requestedBefore);

    await credit(1_000_000);
    const again = await stack.call("POST", `/v2/${sleepEp}/runsync`, { key: tenant.key, body: { input: { ms: 1 } } });
    expect(again.status).toBe(200);
    expect(again.body.status).toBe("COMPLETED");
    expect(await requestedWorkers(sleepEp)).toBe(requestedBefore + 1);
  }, 120_000);

  it("a metered tenant is never refused; the spend per hour holds scale-up only", async () => {
    const metered = await stack.tenantWithId("metered", { billingMode: "meter" });
    const ep = await stack.endpoint(metered.key, { engine: echo, workersMax: 1, idleTimeout: 600 });
    const first = await stack.call("POST", `/v2/${ep}/runsync`, { key: metered.key, body: { input: 1 } });
    expect(first.body.status).toBe("COMPLETED");
    // A charge in the last hour, then a limit below it: the idle worker keeps serving, no new one starts.
    await stack.sql`insert into ledger_entries (tenant_id, key, kind, amount_micros, seconds, at) values (${metered.id}, ${`test-charge:${metered.id}`}, 'charge', -50, 0, now())`;
    await stack.api.deps.balances.rebuild([metered.id]);
    expect((await stack.call("PUT", `/admin/tenants/${metered.id}/limits`, { key: ADMIN, body: { spendPerHourMicros: 10 } })).status).toBe(200);
    const hb = await waitFor(async () => {
      const h = (await stack.call("GET", `/v2/${ep}/health`, { key: metered.key })).body;
      return h.waitReason === "billing" ? h : undefined;
    }, 20_000, 100);
    expect(hb.workers.idle).toBe(1);
    const second = await stack.call("POST", `/v2/${ep}/runsync`, { key: metered.key, body: { input: 2 } });
    expect(second.body.status).toBe("COMPLETED");
    expect((await stack.call("GET", "/api/v1/billing/balance", { key: metered.key })).body.balanceMicros).toBeLessThan(0);
  }, 60_000);

  it("PUT /admin/tenants/:id/billing switches a tenant's mode; 404 for an unknown tenant, 400 naming the field", async () => {
    const t = await stack.tenantWithId("switch");
    const ep = await stack.endpoint(t.key, { engine: echo, workersMax: 0 });
    expect((await stack.call("POST", `/v2/${ep}/run`, { key: t.key, body: { input: 1 } })).status).toBe(402);
    const put = await stack.call("PUT", `/admin/tenants/${t.id}/billing`, { key: ADMIN, body: { billingMode: "meter" } });
    expect(put.body).toEqual({ tenantId: t.id, billingMode: "meter" });
    // API replicas read the mode within 5 s (the tenant policy cache); this one was told at once.
    await waitFor(async () => ((await stack.call("POST", `/v2/${ep}/run`, { key: t.key, body: { input: 1 } })).status === 200 ? true : undefined), 10_000, 200);
    expect((await stack.call("PUT", "/admin/tenants/tn_nobody/billing", { key: ADMIN, body: { billingMode: "meter" } })).status).toBe(404);
    const bad = await stack.call("PUT", `/admin/tenants/${t.id}/billing`, { key: ADMIN, body: { billingMode: "free" } });
    expect(bad.status).toBe(400);
    expect(bad.body.issues[0].path).toBe("billingMode");
  }, 60_000);
});
