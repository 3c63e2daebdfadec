import { join } from "node:path";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { startApiServer } from "../apps/api/api-server.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

describe("write-behind job records", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it("has every accepted job in Postgres after a clean shutdown", async () => {
    const db = await createTestDatabase();
    cleanups.push(db.drop);
    const api = await startApiServer({
      databaseUrl: db.url,
      redisUrl: TEST_REDIS_URL,
      redisPrefix: uniquePrefix(),
      handlerDirs: [examplesDir],
      port: 0,
      host: "127.0.0.1",
      adminToken: "shutdown-admin-token-0123",
    });
    const call = apiClient(api.url);
    const key = (await call("POST", "/admin/tenants", { key: "shutdown-admin-token-0123", body: { name: "s" } })).body.apiKey;
    const ep = (await call("POST", "/api/v1/endpoints", { key, body: { name: "s", engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMax: 0 } })).body.id;
    const accepted = new Set<string>();
    await Promise.all(
      Array.from({ length: 400 }, async (_, i) => {
        const r = await call("POST", `/v2/${ep}/run`, { key, body: { input: { i } } });
        if (r.status === 200) accepted.add(r.body.id);
      }),
    );
    expect(accepted.size).toBe(400);
    await api.close(); // no wait for the flush timer: close() itself must flush

    const sql = postgres(db.url, { max: 1 });
    try {
      const rows = await sql<{ id: string; status: string }[]>`select id, status from jobs where endpoint_id = ${ep}`;
      expect(new Set(rows.map((r) => r.id))).toEqual(accepted);
      expect(rows.every((r) => r.status === "IN_QUEUE")).toBe(true);
    } finally {
      await sql.end();
    }
  });
});
