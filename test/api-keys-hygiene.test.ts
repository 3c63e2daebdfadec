import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { newApiKey } from "../core/ids/random-id.ts";
import { apiClient } from "./support/api-client.ts";
import { spawnApi } from "./support/entry-process.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix, waitFor } from "./support/services.ts";

const ADMIN = "keys-hygiene-admin-token-0123456789";

/**
 * Key handling across API replicas, on real Redis and Postgres: three API servers in this process
 * on one database. A and B share a Redis prefix, so B hears A's broadcasts; C has a prefix of its
 * own, so it listens on another API channel and never hears them (as a replica whose subscriber
 * was reconnecting when the broadcast went out). Each has its own clock, moved by the test.
 */
describe("API keys across replicas", () => {
  let db: { url: string; drop: () => Promise<void> };
  let sql: postgres.Sql;
  const clocks = { a: 1_000_000, b: 1_000_000, c: 1_000_000 };
  let a: RunningApi;
  let b: RunningApi;
  let c: RunningApi;
  const call = { a: apiClient(""), b: apiClient(""), c: apiClient("") };
  let owner: string;

  const start = (prefix: string, clock: keyof typeof clocks) =>
    startApiServer(
      { databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: prefix, handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN },
      { now: () => clocks[clock] },
    );

  beforeAll(async () => {
    db = await createTestDatabase();
    sql = postgres(db.url, { max: 2, onnotice: () => {} });
    const shared = uniquePrefix();
    [a, b, c] = await Promise.all([start(shared, "a"), start(shared, "b"), start(uniquePrefix(), "c")]);
    call.a = apiClient(a.url);
    call.b = apiClient(b.url);
    call.c = apiClient(c.url);
    owner = (await call.a("POST", "/admin/tenants", { key: ADMIN, body: { name: "owner" } })).body.apiKey;
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), c?.close()]);
    await sql?.end({ timeout: 5 });
    await db?.drop();
  });

  const status = async (api: keyof typeof call, key: string) => (await call[api]("GET", "/api/v1/endpoints", { key })).status;

  it("refuses a revoked key at once where it was revoked, on hearing the broadcast elsewhere, and within the key cache's TTL on a replica that never hears it", async () => {
    const created = await call.a("POST", "/api/v1/keys", { key: owner, body: { name: "doomed" } });
    expect(created.status).toBe(200);
    const doomed: string = created.body.key;
    const t0 = clocks.c;
    for (const api of ["a", "b", "c"] as const) expect(await status(api, doomed), api).toBe(200);

    expect((await call.a("DELETE", `/api/v1/keys/${created.body.id}`, { key: owner })).status).toBe(200);
    expect(await status("a", doomed)).toBe(401);
    await waitFor(async () => (await status("b", doomed)) === 401);

    // C missed the broadcast: its cached copy is all that still lets the key in, and only until the TTL.
    clocks.c = t0 + 59_999;
    expect(await status("c", doomed)).toBe(200);
    clocks.c = t0 + 60_000;
    expect(await status("c", doomed)).toBe(401);
    expect(await status("c", owner)).toBe(200);
  });

  it("refuses a key revoked on one API on a second API process (apps/api/main.ts, its own node process) once the broadcast arrives", async () => {
    const other = await spawnApi({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: a.deps.keys.prefix, handlerDirs: [examplesDir], adminToken: ADMIN });
    try {
      const callOther = apiClient(other.url);
      const created = (await call.a("POST", "/api/v1/keys", { key: owner, body: { name: "to-revoke" } })).body;
      // The other process caches the key (valid for 60 s there, as far as its cache knows).
      expect((await callOther("GET", "/api/v1/endpoints", { key: created.key })).status).toBe(200);
      expect((await call.a("DELETE", `/api/v1/keys/${created.id}`, { key: owner })).status).toBe(200);
      await waitFor(async () => (await callOther("GET", "/api/v1/endpoints", { key: created.key })).status === 401, 10_000);
      expect((await callOther("GET", "/api/v1/endpoints", { key: owner })).status).toBe(200);
    } finally {
      await other.kill("SIGTERM");
    }
  });

  it("answers a repeated bad key from memory: with api_keys locked against every reader, a flood of it is still refused", async () => {
    const bad = newApiKey();
    expect(await status("a", bad)).toBe(401); // asked Postgres once, remembered
    expect(await status("a", owner)).toBe(200); // cached as known

    const locker = await sql.reserve();
    try {
      await locker`begin`;
      await locker`lock table api_keys in access exclusive mode`;
      // Control: a key A has not seen must wait for the table, so the lock does stop look-ups.
      const fresh = call.a("GET", "/api/v1/endpoints", { key: newApiKey() });
      await waitFor(async () => {
        const [row] = await sql<{ n: number }[]>`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock' and query like '%api_keys%'`;
        return row!.n === 1;
      });
      // A look-up for any of these would queue behind the lock and hold this test until its timeout.
      const flood = await Promise.all(Array.from({ length: 300 }, () => status("a", bad)));
      expect(flood.every((s) => s === 401)).toBe(true);
      expect(await status("a", owner)).toBe(200);
      expect(await status("a", "garbage-that-is-no-key")).toBe(401); // not even hashed
      await locker`commit`;
      expect((await fresh).status).toBe(401);
    } finally {
      await locker`rollback`.catch(() => {}); // a failed assertion must not leave the table locked
      locker.release();
    }
  });

  it("gives one answer for any handler module outside the allowed directories, existing or not", async () => {
    const refuse = async (module: string) => {
      const r = await call.a("POST", "/api/v1/endpoints", { key: owner, body: { name: "probe", engine: { kind: "handler", module } } });
      expect(r.status, module).toBe(400);
      return r.body;
    };
    const existing = await refuse("/etc/passwd");
    expect(await refuse("/etc/hearth-surely-missing.mjs")).toEqual(existing);
    expect(await refuse("/etc")).toEqual(existing);
    expect(await refuse(`${examplesDir}/../../../../etc/passwd`)).toEqual(existing);
    expect((await refuse(`${examplesDir}/surely-missing.mjs`)).issues[0].message).toBe("module does not exist");
  });

  it("drops a deleted endpoint's Queue object on every replica that hears the deletion", async () => {
    const ep = await call.a("POST", "/api/v1/endpoints", { key: owner, body: { name: "short-lived", engine: { kind: "handler", module: `${examplesDir}/echo.mjs` }, workersMax: 0 } });
    expect(ep.status).toBe(200);
    for (const api of ["a", "b"] as const) expect((await call[api]("POST", `/v2/${ep.body.id}/run`, { key: owner, body: { input: {} } })).status).toBe(200);
    expect(a.deps.queues.holds(ep.body.id)).toBe(true);
    expect(b.deps.queues.holds(ep.body.id)).toBe(true);
    expect((await call.a("DELETE", `/api/v1/endpoints/${ep.body.id}`, { key: owner })).status).toBe(200);
    await waitFor(() => !a.deps.queues.holds(ep.body.id) && !b.deps.queues.holds(ep.body.id));
  });
});
