import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examplesDir, fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { spawnControl } from "./support/entry-process.ts";

interface Received {
  at: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A real HTTP receiver on loopback: answers each request with the next planned status (then 200). */
async function receiver(plan: number[] = []) {
  const got: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      got.push({ at: Date.now(), headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      res.statusCode = plan.shift() ?? 200;
      res.end("ok");
    });
  });
  // 127.0.0.2: the stack allow-lists this address alone, so the rest of loopback stays refused.
  await new Promise<void>((r) => server.listen(0, "127.0.0.2", () => r()));
  const url = `http://127.0.0.2:${(server.address() as AddressInfo).port}/hook`;
  return { url, got, close: () => new Promise<void>((r) => server.close(() => r())) };
}

const verify = (secret: string, r: Received) =>
  new Webhook(secret).verify(r.body, { "webhook-id": String(r.headers["webhook-id"]), "webhook-timestamp": String(r.headers["webhook-timestamp"]), "webhook-signature": String(r.headers["webhook-signature"]) });

describe("webhooks", () => {
  let stack: Stack;
  let key: string;
  let echoEp: string;
  let echoSecret: string;
  const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
  const failing = { kind: "handler", module: join(fixturesDir, "fail-throw.mjs") };

  const createEndpoint = async (body: Record<string, unknown>) => {
    const r = await stack.call("POST", "/api/v1/endpoints", { key, body: { name: "wh", ...body } });
    expect(r.status).toBe(200);
    return { id: r.body.id as string, secret: r.body.webhookSecret as string };
  };
  const deliveriesOf = async (jobId: string) => (await stack.call("GET", `/api/v1/jobs/${jobId}/deliveries`, { key })).body.items as { id: string; state: string; attempts: { attempt: number; outcome: string; status: number | null }[] }[];
  const settled = (jobId: string, state = "delivered") =>
    waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/jobs/${jobId}/deliveries`, { key });
      return r.status === 200 && r.body.items.every((d: { state: string }) => d.state === state) ? (r.body.items as Awaited<ReturnType<typeof deliveriesOf>>) : undefined;
    }, 30_000, 50);

  beforeAll(async () => {
    // A compressed schedule: 0 s, then 1 s between attempts, four attempts in all.
    stack = await startStack({ webhookScheduleS: [0, 1, 1, 1], webhookTimeoutMs: 2000, egressAllowList: "127.0.0.2/32" });
    key = await stack.tenant("hooks");
    ({ id: echoEp, secret: echoSecret } = await createEndpoint({ engine: echo, workersMin: 1, workersMax: 1 }));
    expect(echoSecret).toMatch(/^whsec_/);
  }, 60_000);
  afterAll(async () => stack?.close());

  it("retries a failing receiver on the schedule with one webhook-id and a verifiable signature, until it accepts", async () => {
    const r = await receiver([503, 500]);
    try {
      const run = await stack.call("POST", `/v2/${echoEp}/run`, { key, body: { input: { hello: "hook" }, webhook: r.url } });
      expect(run.status).toBe(200);
      const items = await settled(run.body.id);
      expect(r.got).toHaveLength(3);
      expect(new Set(r.got.map((g) => g.headers["webhook-id"]))).toEqual(new Set([items[0]!.id]));
      for (const g of r.got) expect(verify(echoSecret, g)).toMatchObject({ id: run.body.id, status: "COMPLETED", output: { echo: { hello: "hook" } }, input: { hello: "hook" }, webhook: r.url });
      // Identical bytes on every attempt; the second and third about one schedule step apart.
      expect(new Set(r.got.map((g) => g.body)).size).toBe(1);
      expect(r.got[1]!.at - r.got[0]!.at).toBeGreaterThanOrEqual(800);
      expect(items[0]!.attempts.map((a) => [a.attempt, a.outcome, a.status])).toEqual([
        [1, "retry", 503],
        [2, "retry", 500],
        [3, "delivered", 200],
      ]);
      const health = await stack.call("GET", `/api/v1/endpoints/${echoEp}/webhooks`, { key });
      expect(health.body).toMatchObject({ failuresInARow: 0, pending: 0 });
      expect(health.body.lastSuccessAt).not.toBeNull();
    } finally {
      await r.close();
    }
  }, 60_000);

  it("delivers webhook and webhookV2, and FAILED, CANCELLED and TIMED_OUT jobs too", async () => {
    const r = await receiver();
    try {
      const both = await stack.call("POST", `/v2/${echoEp}/run`, { key, body: { input: 1, webhook: `${r.url}?v=1`, webhookV2: `${r.url}?v=2` } });
      expect((await settled(both.body.id)).map((d) => (d as unknown as { field: string }).field).sort()).toEqual(["webhook", "webhookV2"]);

      const { id: failEp, secret: failSecret } = await createEndpoint({ engine: failing, workersMax: 1 });
      const failed = await stack.call("POST", `/v2/${failEp}/run`, { key, body: { input: { message: "boom" }, webhook: r.url } });
      await settled(failed.body.id);

      const { id: parked, secret: parkedSecret } = await createEndpoint({ engine: echo, workersMax: 0 });
      const cancelled = await stack.call("POST", `/v2/${parked}/run`, { key, body: { input: 2, webhook: r.url } });
      expect((await stack.call("POST", `/v2/${parked}/cancel/${cancelled.body.id}`, { key })).status).toBe(200);
      await settled(cancelled.body.id);
      const expired = await stack.call("POST", `/v2/${parked}/run`, { key, body: { input: 3, webhook: r.url, policy: { ttl: 10_000 } } });
      // Past its TTL a read expires it (the API removes it from the queue and logs why).
      await waitFor(async () => (await stack.call("GET", `/v2/${parked}/status/${expired.body.id}`, { key })).status === 404, 30_000, 500);
      await settled(expired.body.id);

      const byJob = (id: string, secret: string) => verify(secret, r.got.find((g) => JSON.parse(g.body).id === id)!);
      expect(byJob(failed.body.id, failSecret)).toMatchObject({ status: "FAILED", error: expect.stringContaining("boom") });
      expect(byJob(cancelled.body.id, parkedSecret)).toMatchObject({ status: "CANCELLED", input: 2 });
      expect(byJob(expired.body.id, parkedSecret)).toMatchObject({ status: "TIMED_OUT", input: 3 });
    } finally {
      await r.close();
    }
  }, 90_000);

  it("stops at a 4xx, exhausts the schedule on 5xx, and redelivers on request under the same id", async () => {
    const r = await receiver([404, 500, 500, 500, 500]);
    try {
      const run = await stack.call("POST", `/v2/${echoEp}/run`, { key, body: { input: 4, webhook: r.url } });
      const [stopped] = await settled(run.body.id, "failed");
      expect(stopped!.attempts.map((a) => a.outcome)).toEqual(["stop"]);
      const run2 = await stack.call("POST", `/v2/${echoEp}/run`, { key, body: { input: 5, webhook: r.url } });
      const [exhausted] = await settled(run2.body.id, "exhausted");
      expect(exhausted!.attempts).toHaveLength(4);
      expect((await stack.call("GET", `/api/v1/endpoints/${echoEp}/webhooks`, { key })).body).toMatchObject({ failuresInARow: 5, exhausted: 1, failed: 1 });
      // Now the receiver accepts: a manual retry delivers with the same webhook-id.
      const retry = await stack.call("POST", `/api/v1/jobs/${run2.body.id}/deliveries/retry`, { key });
      expect(retry.status).toBe(200);
      const [delivered] = await settled(run2.body.id);
      expect(delivered!.attempts.at(-1)).toMatchObject({ attempt: 5, outcome: "delivered" });
      expect(new Set(r.got.filter((g) => JSON.parse(g.body).id === run2.body.id).map((g) => g.headers["webhook-id"])).size).toBe(1);
      expect((await stack.call("POST", "/api/v1/jobs/no-such-job/deliveries/retry", { key })).status).toBe(404);
    } finally {
      await r.close();
    }
  }, 90_000);

  it("refuses private addresses at submit (400 naming the field) and at send (a name resolving to loopback)", async () => {
    for (const [field, url] of [
      ["webhook", "https://10.1.2.3/hook"],
      ["webhookV2", "https://169.254.169.254/latest"],
      ["webhook", "https://localhost/hook"],
    ] as const) {
      const res = await stack.call("POST", `/v2/${echoEp}/run`, { key, body: { input: 1, [field]: url } });
      expect(res.status).toBe(400);
      expect(res.body.issues[0].path).toBe(field);
    }
    // At send: a delivery whose host name resolves to 127.0.0.1 (this machine's /etc/hosts name), not allow-listed by name.
    const host = (await import("node:os")).hostname();
    await stack.sql`insert into webhook_deliveries (id, job_id, endpoint_id, tenant_id, field, url, payload, state, next_attempt_at)
                    values ('msg_ssrf_test', 'ssrf-job', ${echoEp}, (select tenant_id from endpoints where id = ${echoEp}), 'webhook', ${`https://${host}:9/x`}, '{}', 'pending', now())`;
    const row = await waitFor(async () => {
      const [d] = await stack.sql<{ state: string; last_error: string | null }[]>`select state, last_error from webhook_deliveries where id = 'msg_ssrf_test'`;
      return d && d.state !== "pending" ? d : undefined;
    }, 20_000, 100);
    expect(row.state).toBe("failed");
    expect(row.last_error).toMatch(/127\.0\.0\.1|loopback/);
  }, 60_000);

  it("rotates the signing secret: the old one verifies beside the new during the grace", async () => {
    const rot = await stack.call("POST", `/api/v1/endpoints/${echoEp}/webhook-secret/rotate`, { key });
    expect(rot.status).toBe(200);
    const next = rot.body.webhookSecret as string;
    expect(next).not.toBe(echoSecret);
    expect(Date.parse(rot.body.previousExpiresAt) - Date.now()).toBeGreaterThan(23 * 3_600_000);
    const r = await receiver();
    try {
      const run = await stack.call("POST", `/v2/${echoEp}/run`, { key, body: { input: 6, webhook: r.url } });
      await settled(run.body.id);
      expect(verify(echoSecret, r.got[0]!)).toMatchObject({ id: run.body.id });
      expect(verify(next, r.got[0]!)).toMatchObject({ id: run.body.id });
      expect(String(r.got[0]!.headers["webhook-signature"]).split(" ")).toHaveLength(2);
    } finally {
      await r.close();
    }
  }, 60_000);

  it("a deliverer SIGKILLed between attempts resumes them; no attempt is lost or sent twice", async () => {
    const other = await startStack({ control: false, egressAllowList: "127.0.0.2/32" });
    const r = await receiver([503]);
    try {
      const k = await other.tenant("kill");
      const ep = await other.endpoint(k, { engine: echo, workersMax: 1 });
      const env = { HEARTH_WEBHOOK_RETRY_SCHEDULE: "0,4,1", HEARTH_EGRESS_ALLOW_HTTP: "1", HEARTH_EGRESS_ALLOWLIST: "127.0.0.2/32" };
      const first = await spawnControl({ databaseUrl: other.databaseUrl, redisUrl: other.redisUrl, redisPrefix: other.redisPrefix, env });
      const run = await other.call("POST", `/v2/${ep}/run`, { key: k, body: { input: 7, webhook: r.url } });
      await waitFor(() => r.got.length >= 1, 30_000, 20);
      await waitFor(async () => (await other.sql`select 1 from webhook_attempts where outcome = 'retry'`).length === 1, 10_000, 20);
      first.kill("SIGKILL");
      await first.exited;
      const second = await spawnControl({ databaseUrl: other.databaseUrl, redisUrl: other.redisUrl, redisPrefix: other.redisPrefix, env });
      try {
        await waitFor(async () => (await other.call("GET", `/api/v1/jobs/${run.body.id}/deliveries`, { key: k })).body.items?.[0]?.state === "delivered", 30_000, 50);
      } finally {
        second.kill("SIGTERM");
        await second.exited;
      }
      expect(r.got).toHaveLength(2);
      expect(new Set(r.got.map((g) => g.headers["webhook-id"])).size).toBe(1);
      const attempts = await other.sql<{ attempt: number; outcome: string }[]>`select attempt, outcome from webhook_attempts order by attempt`;
      expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([
        [1, "retry"],
        [2, "delivered"],
      ]);
    } finally {
      await r.close();
      await other.close();
    }
  }, 90_000);
});
