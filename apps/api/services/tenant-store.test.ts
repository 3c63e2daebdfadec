import postgres from "postgres";
import { drizzle } from "drizzle-orm/postgres-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as schema from "../../../core/db/schema.ts";
import { newApiKey } from "../../../core/ids/random-id.ts";
import type { ControlMessage } from "../../../core/queue/messages.ts";
import { createTestDatabase } from "../../../test/support/services.ts";
import { hashKey, TenantStore, type TenantStoreOptions } from "./tenant-store.ts";
import { BOOTSTRAP_ACTOR } from "../../../core/contracts/audit.ts";

const by = { actor: BOOTSTRAP_ACTOR, keyId: null, sourceAddress: null };

/**
 * Real Postgres. Every statement the store sends goes through postgres.js' `debug` hook of this
 * file's own connection, so `queries` counts exactly what reached Postgres.
 */
describe("TenantStore", () => {
  let sql: postgres.Sql;
  let drop: () => Promise<void>;
  let queries = 0;
  let clock = 1_000_000;
  const store = (options: Partial<TenantStoreOptions> = {}) =>
    new TenantStore({ db: drizzle(sql, { schema }), now: () => clock, ...options });

  beforeAll(async () => {
    const t = await createTestDatabase();
    drop = t.drop;
    // One connection, opened here: postgres.js' own set-up query on connecting is then not counted.
    sql = postgres(t.url, { max: 1, onnotice: () => {}, debug: () => void queries++ });
    await sql`select 1`;
  });
  afterAll(async () => {
    await sql?.end({ timeout: 5 });
    await drop?.();
  });

  const counting = async (fn: () => Promise<unknown>) => {
    const before = queries;
    await fn();
    return queries - before;
  };

  it("asks Postgres once per bad key per 5 s, however often and however concurrently it is presented", async () => {
    const tenants = store();
    const bogus = newApiKey(); // well-formed, never issued
    expect(await counting(async () => {
      const burst = await Promise.all(Array.from({ length: 200 }, () => tenants.authenticate(bogus)));
      expect(burst.every((p) => p === undefined)).toBe(true);
      for (let i = 0; i < 500; i++) expect(await tenants.authenticate(bogus)).toBeUndefined();
    })).toBe(1);
    clock += 4_999;
    expect(await counting(() => tenants.authenticate(bogus))).toBe(0);
    clock += 1;
    expect(await counting(() => tenants.authenticate(bogus))).toBe(1);
  });

  it("refuses what is not shaped like an issued key without a query", async () => {
    const tenants = store();
    const shapes = ["hk_nope", "Bearer", "x".repeat(10_000), `${newApiKey()}x`, newApiKey().replace("hk_", "sk_"), "hk_" + "!".repeat(32)];
    expect(await counting(async () => {
      for (const k of shapes) expect(await tenants.authenticate(k)).toBeUndefined();
    })).toBe(0);
  });

  it("bounds the unknown-key cache: the oldest bad key is asked about again", async () => {
    const tenants = store({ maxCachedKeys: 3 });
    const bad = Array.from({ length: 4 }, () => newApiKey());
    expect(await counting(async () => {
      for (const k of bad) await tenants.authenticate(k);
    })).toBe(4);
    expect(await counting(() => tenants.authenticate(bad[3]!))).toBe(0);
    expect(await counting(() => tenants.authenticate(bad[0]!))).toBe(1);
  });

  it("serves a known key from memory until its TTL, and holds no plaintext key in memory", async () => {
    const tenants = store();
    const { id: tenantId, apiKey } = await tenants.createTenant("mem", "meter", by);
    const principal = await tenants.authenticate(apiKey);
    expect(principal).toMatchObject({ tenantId, keyId: expect.stringMatching(/^key_/) });
    expect(await counting(() => tenants.authenticate(apiKey))).toBe(0);
    clock += 60_000;
    expect(await counting(() => tenants.authenticate(apiKey))).toBe(1);
    // Everything reachable from the store but its database handle: the key's hash, never the key.
    const strings = reachableStrings(tenants, new Set([(tenants as unknown as { db: unknown }).db]));
    expect(strings.has(hashKey(apiKey))).toBe(true);
    expect([...strings].some((s) => s.includes(apiKey))).toBe(false);
  });

  it("revokes at once here, announces it, and a replica that missed the announcement refuses the key once its cache expires", async () => {
    const announced: ControlMessage[] = [];
    const here = store({
      invalidations: {
        announce: async (msg) => {
          announced.push(msg);
          return true;
        },
      },
    });
    const replica = store(); // hears nothing
    const { id: tenantId } = await here.createTenant("rev", "meter", by);
    const created = await here.createKey(tenantId, "doomed", "full", by);
    const t0 = clock;
    expect(await here.authenticate(created.key)).toBeDefined();
    expect(await replica.authenticate(created.key)).toBeDefined();

    expect(await here.revokeKey(tenantId, created.id, by)).toBe(hashKey(created.key));
    expect(announced).toEqual([{ type: "invalidate-key", keyHash: hashKey(created.key) }]);
    expect(await here.authenticate(created.key)).toBeUndefined();
    expect(await here.revokeKey(tenantId, created.id, by)).toBeUndefined(); // already revoked: nothing to announce
    expect(announced).toHaveLength(1);

    clock = t0 + 59_999;
    expect(await replica.authenticate(created.key)).toBeDefined(); // the window the TTL allows
    clock = t0 + 60_000;
    expect(await replica.authenticate(created.key)).toBeUndefined();
  });

  it("does not cache a look-up that a revocation overtook", async () => {
    const tenants = store();
    const { apiKey } = await tenants.createTenant("race", "meter", by);
    const pending = tenants.authenticate(apiKey); // its query is on the wire
    tenants.forgetKeyHash(hashKey(apiKey)); // a revocation lands meanwhile
    expect(await pending).toBeDefined(); // answered as Postgres did when asked…
    expect(await counting(() => tenants.authenticate(apiKey))).toBe(1); // …but not remembered
  });
});

/** Every string reachable through own properties, Maps, Sets and arrays from `root`, not descending into `skip`. */
function reachableStrings(root: unknown, skip: Set<unknown>): Set<string> {
  const out = new Set<string>();
  const seen = new Set<unknown>();
  const visit = (v: unknown): void => {
    if (typeof v === "string") {
      out.add(v);
      return;
    }
    if (typeof v !== "object" || v === null || seen.has(v) || skip.has(v)) return;
    seen.add(v);
    if (v instanceof Map) for (const [k, x] of v) (visit(k), visit(x));
    else if (v instanceof Set) for (const x of v) visit(x);
    for (const k of Reflect.ownKeys(v)) visit((v as Record<string | symbol, unknown>)[k]);
  };
  visit(root);
  return out;
}
