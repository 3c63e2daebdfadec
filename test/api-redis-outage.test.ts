import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, freePort, uniquePrefix, waitFor } from "./support/services.ts";

const ADMIN = "outage-admin-token-0123456789";

/** A redis-server of this test's own, so killing it disturbs nobody else. */
function startRedis(port: number): ChildProcess {
  return spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], { stdio: "ignore" });
}

describe("API while Redis is down", () => {
  let port: number;
  let redisProc: ChildProcess;
  let api: RunningApi;
  let drop: () => Promise<void>;
  let call: ReturnType<typeof apiClient>;
  let key: string;
  let ep: string;

  beforeAll(async () => {
    port = await freePort();
    redisProc = startRedis(port);
    const db = await createTestDatabase();
    drop = db.drop;
    const url = `redis://127.0.0.1:${port}`;
    api = await waitFor(() =>
      startApiServer({ databaseUrl: db.url, redisUrl: url, redisPrefix: uniquePrefix(), handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN }).catch(() => undefined),
    );
    call = apiClient(api.url);
    key = (await call("POST", "/admin/tenants", { key: ADMIN, body: { name: "outage" } })).body.apiKey;
    ep = (await call("POST", "/api/v1/endpoints", { key, body: { name: "o", engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMax: 0 } })).body.id;
  });
  afterAll(async () => {
    await api?.close();
    redisProc?.kill("SIGKILL");
    await drop?.();
  });

  it("answers 503 with Retry-After while Redis is away, and serves again once it is back", async () => {
    expect((await call("POST", `/v2/${ep}/run`, { key, body: { input: 1 } })).status).toBe(200);

    redisProc.kill("SIGKILL");
    await new Promise((r) => redisProc.once("exit", r));
    const down = await waitFor(async () => {
      const r = await call("POST", `/v2/${ep}/run`, { key, body: { input: 2 } });
      return r.status === 503 ? r : undefined;
    });
    expect(down.headers.get("retry-after")).toBe("1");
    expect(down.body.code).toBe("unavailable");
    expect((await call("GET", "/readyz")).status).toBe(503);
    expect((await call("GET", "/healthz")).status).toBe(200); // the process itself is fine
    // A scrape needs Redis for the per-endpoint series: 503 too, never a 500.
    const scrape = await call("GET", "/metrics", { key: ADMIN });
    expect(scrape.status).toBe(503);
    expect(scrape.headers.get("retry-after")).toBe("1");

    redisProc = startRedis(port);
    await waitFor(async () => (await call("POST", `/v2/${ep}/run`, { key, body: { input: 3 } })).status === 200, 30_000);
    expect((await call("GET", "/readyz")).status).toBe(200);
    expect((await call("GET", "/metrics", { key: ADMIN })).status).toBe(200);
  });
});
