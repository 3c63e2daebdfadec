import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { RedisKeys } from "../core/queue/keys.ts";
import { parseLogEntry, parseStreamId } from "../core/log/log-entry.ts";
import { DEFAULT_PRICES, priceAt } from "../core/billing/price-table.ts";
import { examplesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { readLog } from "./support/event-log-probe.ts";

const chargeRow = z.object({ key: z.string(), amount_micros: z.coerce.number(), seconds: z.number(), worker_id: z.string(), gpu_type: z.string(), endpoint_id: z.string() });

/** The worker transitions of one session as the log holds them: ms of each on Redis' clock. */
async function sessionSpan(stack: Stack, endpointId: string, workerId: string) {
  const entries = await readLog(stack.redis, new RedisKeys(stack.redisPrefix).log(endpointId));
  const mine = entries.flatMap((e) => {
    const p = parseLogEntry(e.id, [...e.fields].flat());
    return p.kind === "worker" && p.p.workerId === workerId ? [{ ms: parseStreamId(p.id).ms, p: p.p }] : [];
  });
  const requested = mine.find((t) => t.p.state === "requested");
  const exited = mine.find((t) => t.p.state === "exited" && t.p.by === "scheduler");
  return { requested: requested?.ms, exited: exited?.ms, all: mine };
}

describe("billing: worker sessions become charges on the ledger", () => {
  let stack: Stack;
  let key: string;
  let tenantId: string;
  let endpointId: string;

  beforeAll(async () => {
    stack = await startStack();
    ({ id: tenantId, key } = await stack.tenantWithId("billed"));
    endpointId = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMax: 1, idleTimeout: 1 });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("a session of known length is billed ceil(length) seconds at the cpu price, once", async () => {
    const r = await stack.call("POST", `/v2/${endpointId}/runsync`, { key, body: { input: { hello: 1 } } });
    expect(r.status).toBe(200);
    expect(r.body.status).toBe("COMPLETED");
    const settle = await waitFor(
      async () => {
        const rows = await stack.sql`select worker_id from ledger_entries where endpoint_id = ${endpointId} and key like '%:settle'`;
        return rows[0]?.worker_id as string | undefined;
      },
      60_000,
      200,
    );
    const workerId = settle!;
    const span = await sessionSpan(stack, endpointId, workerId);
    expect(span.requested).toBeDefined();
    expect(span.exited).toBeDefined();
    const expectedSeconds = Math.ceil((span.exited! - span.requested!) / 1000);
    const charges = z.array(chargeRow).parse(await stack.sql`select key, amount_micros, seconds, worker_id, gpu_type, endpoint_id from ledger_entries where worker_id = ${workerId}`);
    const seconds = charges.reduce((s, c) => s + c.seconds, 0);
    const micros = charges.reduce((s, c) => s - c.amount_micros, 0);
    expect(seconds).toBe(expectedSeconds);
    expect(micros).toBe(expectedSeconds * priceAt(DEFAULT_PRICES, "cpu", span.requested!)!);
    expect(new Set(charges.map((c) => c.gpu_type))).toEqual(new Set(["cpu"]));
    const balance = await stack.call("GET", "/api/v1/billing/balance", { key });
    expect(balance.body.chargedMicros).toBe(micros);
    // The cached balance the job path reads was rebuilt from the same entries.
    const cached = JSON.parse((await stack.redis.hget(new RedisKeys(stack.redisPrefix).billingBalances(), tenantId)) ?? "null");
    expect(cached).toMatchObject({ balanceMicros: -micros });
    // Usage, grouped any way, and the month's invoice agree with the ledger to the micro-dollar.
    const month = new Date(span.requested!).toISOString().slice(0, 7);
    const from = `${month}-01T00:00:00Z`;
    for (const groupBy of ["endpoint", "day", "gpuType"]) {
      const usage = await stack.call("GET", `/api/v1/usage?from=${from}&groupBy=${groupBy}`, { key });
      expect(usage.status).toBe(200);
      expect({ seconds: usage.body.totalSeconds, micros: usage.body.totalCostMicros }).toEqual({ seconds, micros });
    }
    const invoice = await stack.call("GET", `/api/v1/invoices/${month}`, { key });
    expect(invoice.body.totalMicros).toBe(micros);
    expect(invoice.body.lines).toEqual([{ endpointId, gpuType: "cpu", seconds, costMicros: micros }]);
  }, 90_000);
});
