import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEdgeHandler } from "../apps/edge/edge-handler.ts";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const ADMIN = "edge-admin-token-0123456789";

/** The edge handler in Node, forwarding to a real API. */
describe("edge forwarder", () => {
  let api: RunningApi;
  let drop: () => Promise<void>;
  let edge: (r: Request) => Promise<Response>;
  let key: string;
  let ep: string;

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(), handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN });
    const post = (path: string, token: string, body: unknown) =>
      fetch(`${api.url}${path}`, { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" }, body: JSON.stringify(body) }).then((r) => r.json() as Promise<any>);
    key = (await post("/admin/tenants", ADMIN, { name: "edge" })).apiKey;
    ep = (await post("/api/v1/endpoints", key, { name: "e", engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMax: 0 })).id;
    edge = createEdgeHandler({ origin: api.url });
  });
  afterAll(async () => {
    await api?.close();
    await drop?.();
  });

  const req = (path: string, init: RequestInit = {}) => edge(new Request(`https://edge.example${path}`, init));

  it("forwards job calls with their key and body, and the origin's answer", async () => {
    const r = await req(`/v2/${ep}/run`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: JSON.stringify({ input: 1 }) });
    expect(r.status).toBe(200);
    const { id } = (await r.json()) as { id: string };
    const s = await req(`/v2/${ep}/status/${id}`, { headers: { authorization: key } });
    expect(await s.json()).toMatchObject({ id, status: "IN_QUEUE" });
    const bad = await req(`/v2/${ep}/run`, { method: "POST", headers: { authorization: `Bearer ${key}`, "content-type": "application/json" }, body: "{}" });
    expect(bad.status).toBe(400); // the origin's own validation, passed through
  });

  it("refuses at the edge: no key, oversize body, admin routes", async () => {
    expect((await req(`/v2/${ep}/health`)).status).toBe(401);
    // Refused on the declared length alone: nothing is read, nothing reaches the origin.
    const big = await req(`/v2/${ep}/run`, { method: "POST", headers: { authorization: key, "content-length": String(11 * 1024 * 1024) }, body: "x" });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ code: "payload_too_large" });
    expect((await req("/admin/tenants", { method: "POST", headers: { authorization: `Bearer ${ADMIN}` }, body: "{}" })).status).toBe(404);
    expect((await req("/healthz")).status).toBe(200);
  });
});
