import { join } from "node:path";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { startApiServer } from "../apps/api/api-server.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { clearPrefix, createTestDatabase, TEST_REDIS_URL, uniquePrefix, waitFor } from "./support/services.ts";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { connectRedis } from "../core/redis/connect.ts";

describe("job records after the API stops", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it("has every accepted job in Postgres once the control plane reads the log, though the API wrote none", async () => {
    const db = await createTestDatabase();
    cleanups.push(db.drop);
    const redisPrefix = uniquePrefix();
    const api = await startApiServer({
      databaseUrl: db.url,
      redisUrl: TEST_REDIS_URL,
      redisPrefix,
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
    await api.close();

    const sql = postgres(db.url, { max: 2 });
    const redis = connectRedis(TEST_REDIS_URL);
    expect((await sql`select count(*)::int as n from jobs`)[0]?.n).toBe(0); // the API itself writes no record
    const control = new ControlPlane({ redis, sql, keys: new RedisKeys(redisPrefix), log: () => {}, blockMs: 100 });
    control.start();
    try {
      const rows = await waitFor(async () => {
        const rs = await sql<{ id: string; status: string }[]>`select id, status from jobs where endpoint_id = ${ep}`;
        return rs.length >= 400 ? rs : undefined;
      });
      expect(new Set(rows.map((r) => r.id))).toEqual(accepted);
      expect(rows).toHaveLength(400);
      expect(rows.every((r) => r.status === "IN_QUEUE")).toBe(true);
    } finally {
      await control.stop();
      await clearPrefix(redis, redisPrefix);
      redis.disconnect();
      await sql.end();
    }
  });
});
