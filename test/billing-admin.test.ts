import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { ensureDatabase, openDb, type DbHandle } from "../core/db/client.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const ADMIN = "billing-admin-token-0123456789";
const DAY = 86_400_000;
const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
const iso = (ms: number) => new Date(ms).toISOString();
const paths = (body: { issues?: { path: string }[] }) => (body.issues ?? []).map((i) => i.path).sort();

/**
 * Prices, credits, the ledger and balances through the real API on Postgres and Redis. The API's
 * clock is the test's (credits are dated by it, the GPU type check reads the table at it); a
 * price version's "not before now" is judged on Redis' clock, so versions here start days ahead
 * of the real time.
 */
describe("billing: prices, credits, ledger, balance", () => {
  let api: RunningApi;
  let dbh: DbHandle;
  let drop: () => Promise<void>;
  let call: ReturnType<typeof apiClient>;
  let clock = Date.now();
  const admin = (method: string, path: string, body?: unknown) => call(method, path, { key: ADMIN, ...(body !== undefined && { body }) });
  /** A future instant no other test uses: the price table is shared by the whole file. */
  let slot = 0;
  const future = () => Date.now() + (10 + slot++) * DAY;

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    dbh = openDb(db.url, { max: 2 });
    api = await startApiServer(
      { databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(), handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN },
      { now: () => clock },
    );
    call = apiClient(api.url);
  });
  afterAll(async () => {
    await api?.close();
    await dbh?.close();
    await drop?.();
  });

  async function tenant(): Promise<{ id: string; key: string }> {
    const r = await admin("POST", "/admin/tenants", { name: "billing" });
    expect(r.status).toBe(200);
    return { id: r.body.id, key: r.body.apiKey };
  }
  const credit = (id: string, body: unknown, idempotencyKey?: string) =>
    fetch(`${api.url}/admin/tenants/${id}/credits`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json", ...(idempotencyKey !== undefined && { "idempotency-key": idempotencyKey }) },
      body: JSON.stringify(body),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as any, replayed: r.headers.get("idempotent-replayed") }));
  const entriesWithKey = async (key: string) => (await dbh.sql`select count(*)::int as n from ledger_entries where key = ${key}`)[0]!.n as number;
  async function allEntries(id: string): Promise<{ id: number; amountMicros: number; at: string }[]> {
    const out = [];
    let cursor: string | null = null;
    do {
      const page = await admin("GET", `/admin/tenants/${id}/ledger?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      expect(page.status).toBe(200);
      out.push(...page.body.items);
      cursor = page.body.nextCursor;
    } while (cursor);
    return out;
  }

  it("shows the default table, and adds a version from a future instant", async () => {
    const before = await admin("GET", "/admin/prices");
    expect(before.status).toBe(200);
    expect(before.body.versions[0]).toMatchObject({ effectiveFrom: "1970-01-01T00:00:00.000Z", source: "default" });
    expect(before.body.versions[0].prices).toMatchObject({ cpu: 20, AMPERE_16: 160, "NVIDIA L4": 190 });

    const from = future();
    const put = await admin("PUT", "/admin/prices", { effectiveFrom: iso(from), prices: { AMPERE_16: 170, "NVIDIA GB200": 3000 }, adds: ["NVIDIA GB200"] });
    expect(put.status).toBe(200);
    const added = put.body.versions.at(-1);
    expect(added).toEqual({ effectiveFrom: iso(from), prices: { AMPERE_16: 170, "NVIDIA GB200": 3000 }, adds: ["NVIDIA GB200"], source: "stored" });
    expect(put.body.versions).toHaveLength(before.body.versions.length + 1);
    // An offset other than Z is the same instant.
    const at = future();
    const offset = new Date(at + 2 * 3600_000).toISOString().replace("Z", "+02:00");
    expect((await admin("PUT", "/admin/prices", { effectiveFrom: offset, prices: { cpu: 25 } })).body.versions.at(-1).effectiveFrom).toBe(iso(at));
    expect((await admin("GET", "/admin/prices")).body.versions).toEqual((await admin("GET", "/admin/prices")).body.versions);
  });

  it("refuses bad versions with 400 naming the field, and leaves the table as it was", async () => {
    const table = (await admin("GET", "/admin/prices")).body.versions;
    const taken = future();
    expect((await admin("PUT", "/admin/prices", { effectiveFrom: iso(taken), prices: { cpu: 21 } })).status).toBe(200);
    const count = table.length + 1;
    const refused = async (body: unknown, expected: string[]) => {
      const r = await admin("PUT", "/admin/prices", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.code).toBe("invalid_request");
      expect(paths(r.body), JSON.stringify(r.body)).toEqual(expected);
    };
    await refused({ effectiveFrom: "2020-01-01T00:00:00Z", prices: { cpu: 21 } }, ["effectiveFrom"]);
    await refused({ effectiveFrom: iso(taken), prices: { cpu: 22 } }, ["effectiveFrom"]);
    await refused({ effectiveFrom: "tomorrow", prices: { cpu: 22 } }, ["effectiveFrom"]);
    await refused({ effectiveFrom: iso(future()), prices: { AMPERE_16: -1 } }, ["prices.AMPERE_16"]);
    await refused({ effectiveFrom: iso(future()), prices: { AMPERE_16: 1.5 } }, ["prices.AMPERE_16"]);
    await refused({ effectiveFrom: iso(future()), prices: { AMPERE_16: "170" } }, ["prices.AMPERE_16"]);
    await refused({ effectiveFrom: iso(future()), prices: { "NVIDIA A100 80GB PCIE": 700 } }, ["prices.NVIDIA A100 80GB PCIE"]);
    await refused({ effectiveFrom: iso(future()), prices: { cpu: 30 }, adds: ["cpu"] }, ["adds.0"]);
    await refused({ effectiveFrom: iso(future()), prices: { cpu: 30 }, adds: ["NEW GPU"] }, ["adds.0"]);
    await refused({ effectiveFrom: iso(future()), prices: { "a\u0000": 1 }, adds: ["a\u0000"] }, ["adds.0", "prices.a\u0000"]);
    await refused({ effectiveFrom: iso(future()), prices: {} }, ["prices"]);
    await refused({ effectiveFrom: iso(future()), prices: { cpu: 30 }, add: ["x"] }, ["(body)"]);
    expect((await admin("GET", "/admin/prices")).body.versions).toHaveLength(count);

    // Four admins adding the same instant at once: one version.
    const same = iso(future());
    const answers = await Promise.all(Array.from({ length: 4 }, (_, i) => admin("PUT", "/admin/prices", { effectiveFrom: same, prices: { cpu: 40 + i } })));
    expect(answers.map((a) => a.status).sort()).toEqual([200, 400, 400, 400]);
    for (const a of answers.filter((x) => x.status === 400)) expect(paths(a.body)).toEqual(["effectiveFrom"]);
    expect((await admin("GET", "/admin/prices")).body.versions.filter((v: { effectiveFrom: string }) => v.effectiveFrom === same)).toHaveLength(1);

    const t = await tenant();
    expect((await call("PUT", "/admin/prices", { key: t.key, body: { effectiveFrom: iso(future()), prices: { cpu: 1 } } })).status).toBe(401);
    expect((await call("GET", "/admin/prices", { key: t.key })).status).toBe(401);
  });

  it("credits once per Idempotency-Key, even when the repeats arrive together", async () => {
    const t = await tenant();
    const first = await credit(t.id, { amountMicros: 5_000_000, reason: "invoice 17" }, "inv-17");
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ kind: "credit", amountMicros: 5_000_000, reason: "invoice 17", at: iso(clock), seconds: null, workerId: null, key: `credit:${t.id}:key:inv-17` });
    expect(first.replayed).toBeNull();
    // The repeat answers the first entry, whatever it asks for now.
    const again = await credit(t.id, { amountMicros: 9, reason: "typo" }, "inv-17");
    expect(again).toEqual({ ...first, replayed: "true" });
    expect(await entriesWithKey(`credit:${t.id}:key:inv-17`)).toBe(1);

    const burst = await Promise.all(Array.from({ length: 8 }, () => credit(t.id, { amountMicros: 1_000, reason: "burst" }, "burst-1")));
    expect(burst.map((b) => b.status)).toEqual(Array(8).fill(200));
    expect(new Set(burst.map((b) => b.body.id)).size).toBe(1);
    expect(burst.filter((b) => b.replayed === null)).toHaveLength(1);
    expect(await entriesWithKey(`credit:${t.id}:key:burst-1`)).toBe(1);

    // The key is the tenant's own: another tenant's same key is another credit.
    const other = await tenant();
    const theirs = await credit(other.id, { amountMicros: 7, reason: "x" }, "inv-17");
    expect(theirs.replayed).toBeNull();
    expect(theirs.body.id).not.toBe(first.body.id);

    // Without the header every call credits.
    const a = await credit(t.id, { amountMicros: 1, reason: "no key" });
    const b = await credit(t.id, { amountMicros: 1, reason: "no key" });
    expect(a.body.id).not.toBe(b.body.id);
    expect((await call("GET", "/api/v1/billing/balance", { key: t.key })).body.creditedMicros).toBe(5_000_000 + 1_000 + 2);
  });

  it("refuses bad credits with 400 naming the field, unknown tenants with 404, tenant keys with 401", async () => {
    const t = await tenant();
    const refused = async (body: unknown, expected: string[], key?: string) => {
      const r = await credit(t.id, body, key);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(paths(r.body), JSON.stringify(r.body)).toEqual(expected);
    };
    await refused({ amountMicros: -5, reason: "r" }, ["amountMicros"]);
    await refused({ amountMicros: 0, reason: "r" }, ["amountMicros"]);
    await refused({ amountMicros: 1.5, reason: "r" }, ["amountMicros"]);
    await refused({ amountMicros: "100", reason: "r" }, ["amountMicros"]);
    await refused({ amountMicros: 2 ** 53, reason: "r" }, ["amountMicros"]);
    await refused({ amountMicros: 1, reason: "a\u0000b" }, ["reason"]);
    await refused({ amountMicros: 1, reason: "x".repeat(501) }, ["reason"]);
    await refused({ amountMicros: 1 }, ["reason"]);
    await refused({ amountMicros: 1, reason: "r" }, ["headers.idempotency-key"], "has space");
    await refused({ amountMicros: 1, reason: "r" }, ["headers.idempotency-key"], "k".repeat(256));
    expect((await credit(t.id, { amountMicros: 1, reason: "x".repeat(500) }, "k".repeat(255))).status).toBe(200);

    // Credits stop short of the largest exact amount, so every balance is an exact integer.
    expect((await credit(t.id, { amountMicros: Number.MAX_SAFE_INTEGER - 1, reason: "max" })).status).toBe(200);
    await refused({ amountMicros: 1, reason: "one too many" }, ["amountMicros"]);
    expect((await call("GET", "/api/v1/billing/balance", { key: t.key })).body.balanceMicros).toBe(Number.MAX_SAFE_INTEGER);

    expect((await credit("tn_nosuchtenant", { amountMicros: 1, reason: "r" })).status).toBe(404);
    expect((await admin("POST", "/admin/tenants/a%00b/credits", { amountMicros: 1, reason: "r" })).status).toBe(404);
    expect((await call("POST", `/admin/tenants/${t.id}/credits`, { key: t.key, body: { amountMicros: 1, reason: "self-service" } })).status).toBe(401);
  });

  it("lists a tenant's entries newest first in pages, to admins only", async () => {
    const t = await tenant();
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) {
      clock += 1000;
      ids.push((await credit(t.id, { amountMicros: 100 + i, reason: `c${i}` })).body.id);
    }
    // Two at the same ms: the id breaks the tie.
    ids.push((await credit(t.id, { amountMicros: 200, reason: "same ms a" })).body.id, (await credit(t.id, { amountMicros: 201, reason: "same ms b" })).body.id);
    const listed = await allEntries(t.id);
    expect(listed.map((e) => e.id)).toEqual([...ids].reverse());
    const first = await admin("GET", `/admin/tenants/${t.id}/ledger`);
    expect(first.body.items).toHaveLength(7);
    expect(first.body.nextCursor).toBeNull();

    for (const cursor of ["nope", Buffer.from(JSON.stringify({ t: 1, id: "job" })).toString("base64url"), Buffer.from(JSON.stringify({ at: 1e300, id: 1 })).toString("base64url")]) {
      const bad = await admin("GET", `/admin/tenants/${t.id}/ledger?cursor=${cursor}`);
      expect(bad.status, cursor).toBe(400);
      expect(paths(bad.body)).toEqual(["cursor"]);
    }
    for (const limit of ["0", "501", "1.5", "x"]) expect(paths((await admin("GET", `/admin/tenants/${t.id}/ledger?limit=${limit}`)).body), limit).toEqual(["limit"]);
    expect((await admin("GET", "/admin/tenants/tn_nosuchtenant/ledger")).status).toBe(404);

    // No tenant key reaches the ledger, its own or another tenant's.
    const other = await tenant();
    expect((await call("GET", `/admin/tenants/${t.id}/ledger`, { key: other.key })).status).toBe(401);
    expect((await call("GET", `/admin/tenants/${t.id}/ledger`, { key: t.key })).status).toBe(401);
    expect((await call("GET", `/api/v1/tenants/${t.id}/ledger`, { key: other.key })).status).toBe(404);
    expect((await call("GET", "/api/v1/billing/balance", { key: other.key })).body).toEqual({ balanceMicros: 0, creditedMicros: 0, chargedMicros: 0, billingMode: "meter" });
  });

  it("balances as the sum of the entries: credits minus charges", async () => {
    const t = await tenant();
    await credit(t.id, { amountMicros: 10_000_000, reason: "top-up" });
    // Charges as the ledger consumer will write them (core/billing/charges.ts keys), one a settlement that gives time back.
    const at = new Date(clock).toISOString();
    for (const [key, micros, seconds] of [["session:w1:minute:1", -45_600, 60], ["session:w1:minute:2", -45_600, 60], ["session:w1:settle", 760, -1]] as const) {
      await dbh.sql`insert into ledger_entries (tenant_id, key, kind, amount_micros, seconds, endpoint_id, worker_id, gpu_type, at)
                    values (${t.id}, ${key}, 'charge', ${micros}, ${seconds}, 'ep-1', 'w1', 'AMPERE_80', ${at}::timestamptz)`;
    }
    const balance = await call("GET", "/api/v1/billing/balance", { key: t.key });
    expect(balance.status).toBe(200);
    expect(balance.body).toEqual({ balanceMicros: 10_000_000 - 90_440, creditedMicros: 10_000_000, chargedMicros: 90_440, billingMode: "meter" });
    const entries = await allEntries(t.id);
    expect(entries.reduce((s, e) => s + e.amountMicros, 0)).toBe(balance.body.balanceMicros);
    expect(entries.find((e) => e.amountMicros === 760)).toMatchObject({ kind: "charge", seconds: -1, workerId: "w1", gpuType: "AMPERE_80", endpointId: "ep-1" });

    // The ledger is append-only, and a credit is never negative, whoever writes.
    await expect(dbh.sql`update ledger_entries set amount_micros = 0 where tenant_id = ${t.id}`).rejects.toThrow(/append-only/);
    await expect(dbh.sql`delete from ledger_entries where tenant_id = ${t.id}`).rejects.toThrow(/append-only/);
    await expect(dbh.sql`insert into ledger_entries (tenant_id, key, kind, amount_micros, at) values (${t.id}, 'credit:neg', 'credit', -1, now())`).rejects.toThrow(/credit_positive/);
    await expect(dbh.sql`insert into ledger_entries (tenant_id, key, kind, amount_micros, at) values (${t.id}, 'x', 'refund', 1, now())`).rejects.toThrow(/kind_check/);
    expect((await call("GET", "/api/v1/billing/balance", { key: t.key })).body.balanceMicros).toBe(10_000_000 - 90_440);
    expect((await call("GET", "/api/v1/billing/balance")).status).toBe(401);
  });

  it("refuses endpoint GPU types the price table does not price now, naming gpuTypeIds.<index>", async () => {
    const t = await tenant();
    const create = (gpuTypeIds: unknown) => call("POST", "/api/v1/endpoints", { key: t.key, body: { name: "g", engine: echo, workersMax: 0, gpuTypeIds } });
    const ok = await create(["AMPERE_16", "NVIDIA L4", "cpu"]);
    expect(ok.status).toBe(200);
    expect(ok.body.gpuTypeIds).toEqual(["AMPERE_16", "NVIDIA L4", "cpu"]);

    const unknown = await create(["AMPERE_16", "NVIDIA A100 80GB PCIE", "A100"]);
    expect(unknown.status).toBe(400);
    expect(paths(unknown.body)).toEqual(["gpuTypeIds.1", "gpuTypeIds.2"]);
    expect(unknown.body.issues[0].message).toContain("unknown GPU type");
    expect(paths((await create(["a\u0000"])).body)).toEqual(["gpuTypeIds.0"]);

    const patch = (gpuTypeIds: unknown) => call("PATCH", `/api/v1/endpoints/${ok.body.id}`, { key: t.key, body: { gpuTypeIds } });
    expect(paths((await patch(["cpu", "H100"])).body)).toEqual(["gpuTypeIds.1"]);
    expect((await call("GET", `/api/v1/endpoints/${ok.body.id}`, { key: t.key })).body.gpuTypeIds).toEqual(["AMPERE_16", "NVIDIA L4", "cpu"]);
    expect((await patch(["ADA_24"])).body.gpuTypeIds).toEqual(["ADA_24"]);

    // A type a future version adds has no price until then: refused before, accepted after.
    const from = future();
    expect((await admin("PUT", "/admin/prices", { effectiveFrom: iso(from), prices: { "NVIDIA RTX PRO 6000": 900 }, adds: ["NVIDIA RTX PRO 6000"] })).status).toBe(200);
    const early = await patch(["NVIDIA RTX PRO 6000"]);
    expect(paths(early.body)).toEqual(["gpuTypeIds.0"]);
    expect(early.body.issues[0].message).toContain("no price yet");
    clock = from + 6000; // past the version's start and the table's cache
    expect((await patch(["NVIDIA RTX PRO 6000"])).status).toBe(200);
    clock = Date.now();
  });
});

describe("migration 0004 on a database with tenants", () => {
  it("puts the tenants that existed before billing on the metered mode", async () => {
    const url = `${process.env.TEST_PG_BASE_URL ?? "postgres://postgres@127.0.0.1:5432"}/hearth_test_${process.env.HEARTH_TEST_RUN}_${randomBytes(5).toString("hex")}`;
    await ensureDatabase(url);
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const apply = async (file: string) => {
        for (const statement of readFileSync(new URL(`../migrations/${file}`, import.meta.url), "utf8").split("--> statement-breakpoint")) await sql.unsafe(statement);
      };
      for (const f of ["0000_init.sql", "0001_llm_metrics.sql", "0002_event_log.sql", "0003_tenant_limits.sql"]) await apply(f);
      await sql`insert into tenants (id, name) values ('tn_old', 'before billing')`;
      await apply("0004_billing_ledger.sql");
      expect(await sql`select id, billing_mode from tenants`).toEqual([{ id: "tn_old", billing_mode: "meter" }]);
    } finally {
      await sql.end({ timeout: 5 });
      const admin = postgres(url.replace(/\/[^/]+$/, "/postgres"), { max: 1, onnotice: () => {} });
      await admin.unsafe(`drop database if exists "${new URL(url).pathname.slice(1)}" with (force)`).finally(() => admin.end({ timeout: 5 }));
    }
  });
});
