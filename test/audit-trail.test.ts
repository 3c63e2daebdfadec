import postgres from "postgres";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const BOOTSTRAP = "audit-bootstrap-token-0123456789";
const DAY = 86_400_000;
const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };

/**
 * The audit log of management actions through the real API on Postgres and Redis: who did what
 * (bootstrap token, admin key, tenant key), that it cannot be edited, that a tenant reads only its
 * own, and that admin keys are revocable at once. Job submissions: test/audit-jobs.test.ts.
 */
describe("audit log and admin keys", () => {
  let api: RunningApi;
  let sql: postgres.Sql;
  let drop: () => Promise<void>;
  let call: ReturnType<typeof apiClient>;
  const entries = async (query: string) => {
    const r = await call("GET", `/admin/audit?${query}`, { key: BOOTSTRAP });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.items as any[];
  };

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
    api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(), handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: BOOTSTRAP });
    call = apiClient(api.url);
  });
  afterAll(async () => {
    await api?.close();
    await sql?.end({ timeout: 5 });
    await drop?.();
  });

  it("records every management action with its actor: the bootstrap token, an admin key, a tenant key", async () => {
    const made = await call("POST", "/admin/keys", { key: BOOTSTRAP, body: { name: "ops-alice" } });
    expect(made.status).toBe(200);
    const adminKey: string = made.body.key;
    const adminKeyId: string = made.body.id;
    const admin = (method: string, path: string, body?: unknown) => call(method, path, { key: adminKey, ...(body !== undefined && { body }) });

    const tenant = await admin("POST", "/admin/tenants", { name: "audited" });
    expect(tenant.status).toBe(200);
    const tid: string = tenant.body.id;
    const tkey: string = tenant.body.apiKey;
    expect((await admin("PUT", `/admin/tenants/${tid}/billing`, { billingMode: "enforce" })).status).toBe(200);
    expect((await admin("PUT", `/admin/tenants/${tid}/limits`, { maxEndpoints: 7 })).status).toBe(200);
    expect((await admin("PUT", `/admin/tenants/${tid}/grants`, { remoteCode: true })).status).toBe(200);
    expect((await admin("POST", `/admin/tenants/${tid}/credits`, { amountMicros: 5_000_000, reason: "trial" })).status).toBe(200);
    const effectiveFrom = new Date(Date.now() + 30 * DAY).toISOString();
    expect((await admin("PUT", "/admin/prices", { effectiveFrom, prices: { cpu: 21 } })).status).toBe(200);

    const tenantCall = (method: string, path: string, body?: unknown) => call(method, path, { key: tkey, ...(body !== undefined && { body }) });
    const ep = await tenantCall("POST", "/api/v1/endpoints", { name: "ep", engine: echo, workersMax: 0 });
    expect(ep.status).toBe(200);
    const epId: string = ep.body.id;
    expect((await tenantCall("PATCH", `/api/v1/endpoints/${epId}`, { idleTimeout: 9 })).status).toBe(200);
    const rotated = await tenantCall("POST", `/api/v1/endpoints/${epId}/webhook-secret/rotate`);
    expect(rotated.status).toBe(200);
    const key = await tenantCall("POST", "/api/v1/keys", { name: "ci", scope: "run" });
    expect(key.status).toBe(200);
    expect((await tenantCall("DELETE", `/api/v1/keys/${key.body.id}`)).status).toBe(200);
    // Rows the control plane would have written, for the routes that change them.
    await sql`insert into webhook_deliveries (id, job_id, endpoint_id, tenant_id, field, url, payload, state, attempts)
              values ('msg_1', 'job-a', ${epId}, ${tid}, 'webhook', 'https://example.com/h', '{}', 'failed', 3)`;
    expect((await tenantCall("POST", "/api/v1/jobs/job-a/deliveries/retry")).status).toBe(200);
    await sql`insert into log_dead_letters (id, consumer, endpoint_id, entry_id, entry_json, reason) values ('records:x:1-0', 'records', ${epId}, '1-0', '[]', 'test'), ('records:x:2-0', 'records', ${epId}, '2-0', '[]', 'test')`;
    expect((await admin("POST", "/admin/log/dead-letters/records:x:1-0/retry")).status).toBe(200);
    expect((await call("POST", "/admin/log/dead-letters/records:x:2-0/discard", { key: BOOTSTRAP })).status).toBe(200);
    expect((await tenantCall("DELETE", `/api/v1/endpoints/${epId}`)).status).toBe(200);

    const all = await entries("limit=500");
    const byAction = (action: string) => all.filter((e) => e.action === action);
    const asAdminKey = { kind: "admin_key", id: adminKeyId };
    const firstKeyId: string = (await tenantCall("GET", "/api/v1/keys")).body.find((k: any) => k.name === "default").id;
    const asTenantKey = { kind: "api_key", id: firstKeyId };
    expect(byAction("admin_key.create")).toMatchObject([{ actor: { kind: "bootstrap", id: "bootstrap" }, targetId: adminKeyId, keyId: null }]);
    expect(byAction("tenant.create")).toMatchObject([{ actor: asAdminKey, tenantId: tid, targetId: tid, detail: { name: "audited", firstKeyId } }]);
    expect(byAction("tenant.billing_mode.update")).toMatchObject([{ actor: asAdminKey, tenantId: tid, detail: { billingMode: "enforce" } }]);
    expect(byAction("tenant.limits.update")).toMatchObject([{ actor: asAdminKey, tenantId: tid, detail: { update: { maxEndpoints: 7 } } }]);
    expect(byAction("tenant.grants.update")).toMatchObject([{ actor: asAdminKey, tenantId: tid, detail: { update: { remoteCode: true } } }]);
    expect(byAction("credit.add")).toMatchObject([{ actor: asAdminKey, tenantId: tid, detail: { amountMicros: 5_000_000 } }]);
    expect(byAction("price.add")).toMatchObject([{ actor: asAdminKey, targetId: effectiveFrom, detail: { prices: { cpu: 21 } } }]);
    expect(byAction("dead_letter.retry")).toMatchObject([{ actor: asAdminKey, endpointId: epId, targetId: "records:x:1-0" }]);
    expect(byAction("dead_letter.discard")).toMatchObject([{ actor: { kind: "bootstrap" }, targetId: "records:x:2-0" }]);
    const tenantActions = { actor: asTenantKey, keyId: asTenantKey.id, tenantId: tid };
    expect(byAction("endpoint.create")).toMatchObject([{ ...tenantActions, endpointId: epId, modelName: null, detail: { name: "ep", engine: { kind: "handler" } } }]);
    expect(byAction("endpoint.update")).toMatchObject([{ ...tenantActions, endpointId: epId, detail: { changed: ["idleTimeout"], settings: { idleTimeout: 9 } } }]);
    expect(byAction("webhook_secret.rotate")).toMatchObject([{ ...tenantActions, endpointId: epId }]);
    expect(byAction("key.create")).toMatchObject([{ ...tenantActions, targetId: key.body.id, detail: { name: "ci", scope: "run" } }]);
    expect(byAction("key.revoke")).toMatchObject([{ ...tenantActions, targetId: key.body.id }]);
    expect(byAction("webhook_delivery.retry")).toMatchObject([{ ...tenantActions, endpointId: epId, targetId: "job-a" }]);
    expect(byAction("endpoint.delete")).toMatchObject([{ ...tenantActions, endpointId: epId }]);
    // The socket's address, over loopback here; and never a secret in any entry.
    for (const e of all) expect(e.sourceAddress, e.action).toMatch(/^(::ffff:)?127\.0\.0\.1$/);
    const text = JSON.stringify(all);
    for (const secret of [adminKey, tkey, key.body.key, rotated.body.webhookSecret, ep.body.webhookSecret]) expect(text).not.toContain(secret);
    // Filters: by actor, by action, by tenant.
    expect((await entries(`actor=${adminKeyId}`)).every((e) => e.actor.id === adminKeyId)).toBe(true);
    // tenant.create, billing mode, limits, grants, credit, price, one dead letter retried.
    expect((await entries(`actor=${adminKeyId}`)).length).toBe(7);
    expect((await entries("action=key.revoke")).map((e) => e.targetId)).toEqual([key.body.id]);
    expect((await entries(`tenantId=${tid}&action=endpoint.update`)).length).toBe(1);
  });

  it("pages newest first with a cursor, and filters by time on the database's clock", async () => {
    const t = (await call("POST", "/admin/tenants", { key: BOOTSTRAP, body: { name: "pager" } })).body;
    for (const n of ["a", "b", "c", "d", "e"]) expect((await call("POST", "/api/v1/keys", { key: t.apiKey, body: { name: n } })).status).toBe(200);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r = await call("GET", `/admin/audit?tenantId=${t.id}&action=key.create&limit=2${cursor ? `&cursor=${cursor}` : ""}`, { key: BOOTSTRAP });
      expect(r.status).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.items.map((e: any) => e.detail.name));
      cursor = r.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(["e", "d", "c", "b", "a"]);
    const [newest] = await entries(`tenantId=${t.id}&limit=1`);
    expect(await entries(`tenantId=${t.id}&since=${encodeURIComponent(newest.at)}`)).toContainEqual(newest);
    expect(await entries(`tenantId=${t.id}&until=${encodeURIComponent(newest.at)}`)).not.toContainEqual(newest);
  });

  it("lists admin keys without their secrets, refuses an admin key minting or revoking keys, and refuses a revoked key at once", async () => {
    const made = await call("POST", "/admin/keys", { key: BOOTSTRAP, body: { name: "temp" } });
    const temp: string = made.body.key;
    const listed = await call("GET", "/admin/keys", { key: temp });
    expect(listed.status).toBe(200);
    expect(listed.body.find((k: any) => k.id === made.body.id)).toEqual({ id: made.body.id, name: "temp", prefix: temp.slice(0, 10), createdAt: expect.any(String), revokedAt: null });
    expect(JSON.stringify(listed.body)).not.toContain(temp);
    expect((await sql`select hash from admin_keys where id = ${made.body.id}`)[0]!.hash).not.toContain(temp);
    const refused = await call("POST", "/admin/keys", { key: temp, body: { name: "child" } });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("bootstrap_required");
    expect((await call("DELETE", `/admin/keys/${made.body.id}`, { key: temp })).status).toBe(403);
    expect((await call("GET", "/metrics", { key: temp })).status).toBe(200);

    expect((await call("DELETE", `/admin/keys/${made.body.id}`, { key: BOOTSTRAP })).status).toBe(200);
    for (const path of ["/admin/keys", "/admin/audit", "/admin/prices", "/metrics"]) expect((await call("GET", path, { key: temp })).status, path).toBe(401);
    expect((await call("DELETE", `/admin/keys/${made.body.id}`, { key: BOOTSTRAP })).status).toBe(404);
    expect((await entries(`action=admin_key.revoke`)).map((e) => [e.actor.kind, e.targetId])).toEqual([["bootstrap", made.body.id]]);
  });

  it("refuses UPDATE, DELETE and TRUNCATE of the audit log in Postgres itself", async () => {
    const n = (await sql`select count(*)::int as n from audit_log`)[0]!.n as number;
    expect(n).toBeGreaterThan(0);
    for (const statement of ["update audit_log set action = 'tenant.create'", "delete from audit_log", "truncate audit_log"]) {
      await expect(sql.unsafe(statement), statement).rejects.toMatchObject({ code: "23001", message: expect.stringContaining("append-only") });
    }
    expect((await sql`select count(*)::int as n from audit_log`)[0]!.n).toBe(n);
  });

  it("shows a tenant its own entries only", async () => {
    const a = (await call("POST", "/admin/tenants", { key: BOOTSTRAP, body: { name: "a" } })).body;
    const b = (await call("POST", "/admin/tenants", { key: BOOTSTRAP, body: { name: "b" } })).body;
    const epB = (await call("POST", "/api/v1/endpoints", { key: b.apiKey, body: { name: "b-ep", engine: echo, workersMax: 0 } })).body.id;
    expect((await call("POST", "/api/v1/keys", { key: a.apiKey, body: { name: "a2" } })).status).toBe(200);
    const mine = await call("GET", "/api/v1/audit", { key: a.apiKey });
    expect(mine.status).toBe(200);
    expect(mine.body.items.map((e: any) => e.action).sort()).toEqual(["key.create", "tenant.create"]);
    expect(mine.body.items.every((e: any) => e.tenantId === a.id)).toBe(true);
    // Naming another tenant's endpoint, or its id as a parameter, shows nothing of it.
    expect((await call("GET", `/api/v1/audit?endpointId=${epB}`, { key: a.apiKey })).body.items).toEqual([]);
    expect((await call("GET", `/api/v1/audit?tenantId=${b.id}`, { key: a.apiKey })).body.items.every((e: any) => e.tenantId === a.id)).toBe(true);
    expect((await call("GET", "/api/v1/audit?action=endpoint.create", { key: b.apiKey })).body.items).toMatchObject([{ endpointId: epB, tenantId: b.id }]);
  });

  it("answers hostile input with 400, never 500", async () => {
    const t = (await call("POST", "/admin/tenants", { key: BOOTSTRAP, body: { name: "hostile" } })).body;
    const bad: [string, string, string, unknown][] = [
      [BOOTSTRAP, "POST", "/admin/keys", { name: "nul\u0000name" }],
      [BOOTSTRAP, "POST", "/admin/keys", { name: "lone\ud800" }],
      [BOOTSTRAP, "POST", "/admin/keys", { name: "x".repeat(100_000) }],
      [BOOTSTRAP, "POST", "/admin/keys", { name: "ok", extra: 1 }],
      [BOOTSTRAP, "POST", "/admin/keys", {}],
      [t.apiKey, "POST", "/api/v1/keys", { name: "k", scope: "admin" }],
      [t.apiKey, "POST", "/api/v1/keys", { name: "k\u0000" }],
      [t.apiKey, "POST", "/api/v1/keys", { name: "\udc00k" }],
    ];
    for (const [key, method, path, body] of bad) expect((await call(method, path, { key, body })).status, `${path} ${JSON.stringify(body).slice(0, 60)}`).toBe(400);
    const queries = ["actor=%00", "actor=a%20b", "tenantId=a%00b", "action=nope", "since=yesterday", "since=%2B275760-09-13T00:00:00Z", "until=1969-12-31T23:59:59Z", "limit=0", "limit=100000", "cursor=%00%01", `cursor=${"A".repeat(600)}`, `endpointId=${"e".repeat(5000)}`];
    for (const q of queries) expect((await call("GET", `/admin/audit?${q}`, { key: BOOTSTRAP })).status, q).toBe(400);
    for (const q of queries.filter((q) => !q.startsWith("tenantId"))) expect((await call("GET", `/api/v1/audit?${q}`, { key: t.apiKey })).status, q).toBe(400);
    expect((await call("DELETE", "/admin/keys/%00", { key: BOOTSTRAP })).status).toBe(404);
    // Invalid UTF-8 in a query: Hono keeps it percent-encoded, an id that matches nothing.
    expect(await call("GET", "/admin/audit?tenantId=%ED%A0%80&actor=%ED%A0%80", { key: BOOTSTRAP })).toMatchObject({ status: 200, body: { items: [] } });
  });
});
