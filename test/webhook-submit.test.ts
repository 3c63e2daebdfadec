import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { systemResolveAll } from "../core/net/host-resolution.ts";
import { parseAllowList } from "../core/net/url-policy.ts";
import { apiClient } from "./support/api-client.ts";
import { clearPrefix, createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const fixtures = fileURLToPath(new URL("./fixtures/handlers", import.meta.url));
const ADMIN = "webhook-admin-token-0123456789";

/**
 * Jobs' webhooks are checked at submission against the egress policy (HEARTH_EGRESS_ALLOW_HTTP,
 * HEARTH_EGRESS_ALLOWLIST): 400 naming the field for a forbidden scheme, literal address or a name
 * that resolves locally; a name that does not resolve here is accepted (checked again at send).
 * Two APIs on one database: one with the production defaults, one allowing local http receivers.
 */
describe("webhook URLs at submission", () => {
  let strict: RunningApi;
  let local: RunningApi;
  let drop: () => Promise<void>;
  const prefix = uniquePrefix();
  let key: string;
  let ep: string;

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    const base = { databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix, handlerDirs: [fixtures], port: 0, host: "127.0.0.1", adminToken: ADMIN };
    strict = await startApiServer(base);
    const loopback = parseAllowList("127.0.0.0/8");
    if (!loopback.ok) throw new Error(loopback.errors.join("; "));
    local = await startApiServer({ ...base, egressAllowHttp: true, egressAllowList: loopback.allow });
    const call = apiClient(strict.url);
    key = (await call("POST", "/admin/tenants", { key: ADMIN, body: { name: "hooks" } })).body.apiKey;
    ep = (await call("POST", "/api/v1/endpoints", { key, body: { name: "hooks", engine: { kind: "handler", module: join(fixtures, "sleep.mjs") }, workersMax: 0 } })).body.id;
  });
  afterAll(async () => {
    const redis = strict?.deps.redis;
    if (redis) await clearPrefix(redis, prefix).catch(() => {});
    await local?.close();
    await strict?.close();
    await drop?.();
  });

  const submit = (api: RunningApi, body: object, route = "run") => apiClient(api.url)("POST", `/v2/${ep}/${route}${route === "runsync" ? "?wait=1000" : ""}`, { key, body: { input: { ms: 1 }, ...body } });
  const refused = async (api: RunningApi, body: object, field: string, reason: RegExp, route = "run") => {
    const r = await submit(api, body, route);
    expect(r.status, JSON.stringify(r.body)).toBe(400);
    expect(r.body).toMatchObject({ code: "invalid_request", issues: [{ path: field, message: expect.stringMatching(reason) }] });
    expect(r.body.error).toContain(`${field}: `);
  };

  it("refuses loopback, private and metadata addresses and local names by default, naming the field", async () => {
    await refused(strict, { webhook: "https://127.0.0.1/x" }, "webhook", /127\.0\.0\.1 is a loopback address; not reachable unless HEARTH_EGRESS_ALLOWLIST permits it/);
    await refused(strict, { webhookV2: "https://127.0.0.1/x" }, "webhookV2", /loopback/);
    await refused(strict, { webhook: "https://10.0.0.1/x" }, "webhook", /private/);
    await refused(strict, { webhook: "https://169.254.169.254/latest/meta-data/" }, "webhook", /link-local/);
    await refused(strict, { webhook: "https://100.64.1.1/x" }, "webhook", /CGNAT/);
    await refused(strict, { webhook: "https://[::1]:8443/x" }, "webhook", /loopback/);
    await refused(strict, { webhook: "https://localhost/x" }, "webhook", /localhost is the loopback host/);
    await refused(strict, { webhook: "https://127.0.0.1/x" }, "webhook", /loopback/, "runsync");
  });

  it("refuses plain http:// unless HEARTH_EGRESS_ALLOW_HTTP is on", async () => {
    await refused(strict, { webhook: "http://example.com/hook" }, "webhook", /^http:\/\/ URLs are not accepted \(accepted: https:\)$/);
    await refused(strict, { webhookV2: "http://example.com/hook" }, "webhookV2", /not accepted/, "runsync");
  });

  it("names each refused field", async () => {
    const r = await submit(strict, { webhook: "https://127.0.0.1/a", webhookV2: "http://example.com/b" });
    expect(r.status).toBe(400);
    expect(r.body.issues.map((i: { path: string }) => i.path)).toEqual(["webhook", "webhookV2"]);
  });

  it("refuses a name that resolves to loopback here (the hosts file)", async (ctx) => {
    let name: string | undefined;
    for (const candidate of [hostname(), "vm", "runsc"]) {
      const found = await systemResolveAll(candidate).catch(() => []);
      if (found.length > 0 && found.every((a) => a.address.startsWith("127."))) {
        name = candidate;
        break;
      }
    }
    if (name === undefined) return ctx.skip();
    await refused(strict, { webhook: `https://${name}/hook` }, "webhook", new RegExp(`^${name} resolves to 127\\..* is a loopback address`));
  });

  it("accepts public https:// names, deferred when they do not resolve here, and jobs without a webhook", async () => {
    const accepted = await submit(strict, { webhook: "https://example.com/hook", webhookV2: "https://hooks.example.org/v2" });
    expect(accepted.status, JSON.stringify(accepted.body)).toBe(200);
    expect(accepted.body).toMatchObject({ id: expect.any(String), status: "IN_QUEUE" });
    expect((await submit(strict, {})).status).toBe(200);
    expect((await submit(strict, { webhook: "https://93.184.215.14/hook" })).status).toBe(200);
  });

  it("accepts http:// to allow-listed loopback where the operator allows both", async () => {
    const r = await submit(local, { webhook: "http://127.0.0.1:9/hook", webhookV2: "http://127.0.0.2/hook" });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    // The allow-list still bounds it: private ranges it does not name stay refused.
    await refused(local, { webhook: "http://10.0.0.1/hook" }, "webhook", /private/);
  });
});
