import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { sessionCharges } from "../core/billing/charges.ts";
import { DEFAULT_PRICES } from "../core/billing/price-table.ts";
import type { MeterTransition, WeightsFetchReport } from "../core/billing/session-meter.ts";
import type { WorkerState } from "../core/contracts/worker-state.ts";
import { openDb, type DbHandle } from "../core/db/client.ts";
import { pgSafeInt } from "../core/db/pg-int.ts";
import { apiClient } from "./support/api-client.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const ADMIN = "billing-usage-token-0123456789";
const paths = (body: { issues?: { path: string }[] }) => (body.issues ?? []).map((i) => i.path).sort();
const utc = (...a: [number, number, number, number?, number?, number?, number?]) => Date.UTC(...a);

const tr = (state: WorkerState, ms: number, extra: Partial<MeterTransition> = {}): MeterTransition => ({ seq: `${ms}-0`, state, ...extra });

/** A worker session as the log, the billing consumer and the records projector would leave it. */
interface SessionSpec {
  id: string;
  tenant: "A" | "B";
  endpointId: string;
  gpuType?: string;
  transitions: MeterTransition[];
  weightsFetches?: WeightsFetchReport[];
  /** worker_sessions: its state and end as the records projector saw them. */
  observed: { state: string; endedAt: number | null };
  /** How far the billing consumer has read (ms); default: far past the session. */
  chargedUntil?: number;
  /** false: the billing consumer never saw the session (no billing_sessions row, no charges). */
  billed?: boolean;
}

interface Entry {
  tenantId: string;
  kind: "credit" | "charge" | "adjustment";
  at: number;
  endpointId: string | null;
  gpuType: string | null;
  seconds: number | null;
  amountMicros: number;
}

// The sessions (prices: DEFAULT_PRICES, µ$/s: AMPERE_80 760, ADA_24 310, AMPERE_16 160, cpu 20).
const T1 = utc(2025, 0, 31, 23, 58); // w1 crosses the month boundary
const T2 = utc(2025, 0, 15, 10, 0);
const T3 = utc(2025, 1, 10, 8, 0);
const T4 = utc(2025, 2, 1, 0, 0); // March: outside [Jan, Mar)
const T5 = utc(2025, 1, 12, 9, 0);
const T6 = utc(2025, 1, 20, 12, 0);
const T7 = utc(2025, 1, 25, 6, 0);
const T8 = utc(2025, 1, 26, 10, 0);
const TB = utc(2025, 0, 20, 14, 0);

const SESSIONS: SessionSpec[] = [
  {
    // 150.5 s, 3 s of weights fetch not billed: 147.5 → 148 s; charged 57 + 60 in January, 31 at its end in February.
    id: "w1",
    tenant: "A",
    endpointId: "ep-a1",
    gpuType: "AMPERE_80",
    transitions: [
      tr("requested", T1, { gpuType: "AMPERE_80" }),
      tr("initializing", T1 + 300),
      tr("idle", T1 + 5000),
      tr("running", T1 + 10_000),
      tr("idle", T1 + 22_345),
      tr("running", T1 + 40_000),
      tr("idle", T1 + 99_000),
      tr("exited", T1 + 150_400, { by: "worker" }),
      tr("exited", T1 + 150_500, { by: "scheduler" }),
    ],
    weightsFetches: [{ seq: `${T1 + 4000}-0`, durationMs: 3000 }],
    observed: { state: "exited", endedAt: T1 + 150_500 },
  },
  { id: "w2", tenant: "A", endpointId: "ep-a1", transitions: [tr("requested", T2), tr("idle", T2 + 1000), tr("exited", T2 + 80_000, { by: "scheduler" })], observed: { state: "exited", endedAt: T2 + 80_000 } },
  {
    id: "w3",
    tenant: "A",
    endpointId: "ep-a2",
    gpuType: "ADA_24",
    transitions: [tr("requested", T3, { gpuType: "ADA_24" }), tr("idle", T3 + 1000), tr("exited", T3 + 70_000, { by: "scheduler" })],
    observed: { state: "exited", endedAt: T3 + 70_000 },
  },
  {
    id: "w4",
    tenant: "A",
    endpointId: "ep-a1",
    gpuType: "AMPERE_80",
    transitions: [tr("requested", T4, { gpuType: "AMPERE_80" }), tr("idle", T4 + 1000), tr("exited", T4 + 60_000, { by: "scheduler" })],
    observed: { state: "exited", endedAt: T4 + 60_000 },
  },
  {
    // Lost: last heartbeat at +90 s, noticed at +185 s (three minutes charged), its provider's exit at +190 s.
    // Billed 90 s: a settlement of −90 s gives back what the minutes charged past the heartbeat.
    id: "w5",
    tenant: "A",
    endpointId: "ep-a2",
    gpuType: "AMPERE_80",
    transitions: [tr("requested", T5, { gpuType: "AMPERE_80" }), tr("idle", T5 + 2000), tr("lost", T5 + 185_000, { at: T5 + 90_000 }), tr("exited", T5 + 190_000, { by: "scheduler" })],
    observed: { state: "exited", endedAt: T5 + 190_000 },
  },
  {
    // 100 s observed, 20 s of it downloading weights: billed 80 s.
    id: "w6",
    tenant: "A",
    endpointId: "ep-a2",
    transitions: [tr("requested", T6), tr("initializing", T6 + 500), tr("idle", T6 + 25_000), tr("exited", T6 + 100_000, { by: "scheduler" })],
    weightsFetches: [{ seq: `${T6 + 24_000}-0`, durationMs: 20_000 }],
    observed: { state: "exited", endedAt: T6 + 100_000 },
  },
  {
    // Still open; the billing consumer has charged its first two minutes.
    id: "w7",
    tenant: "A",
    endpointId: "ep-a2",
    gpuType: "AMPERE_16",
    transitions: [tr("requested", T7, { gpuType: "AMPERE_16" }), tr("idle", T7 + 3000)],
    observed: { state: "idle", endedAt: null },
    chargedUntil: T7 + 150_000,
  },
  { id: "w8", tenant: "A", endpointId: "ep-a1", transitions: [tr("requested", T8)], observed: { state: "exited", endedAt: T8 + 300_000 }, billed: false },
  {
    id: "wB",
    tenant: "B",
    endpointId: "ep-b",
    gpuType: "AMPERE_80",
    transitions: [tr("requested", TB, { gpuType: "AMPERE_80" }), tr("idle", TB + 1000), tr("exited", TB + 30_000, { by: "scheduler" })],
    observed: { state: "exited", endedAt: TB + 30_000 },
  },
];

/**
 * Usage, invoices, job costs, session bills and the reconciliation through the real API on
 * PostgreSQL and Redis. The ledger is written as the billing consumer writes it: each session's
 * entries come from core/billing's `sessionCharges`, inserted with SQL, so every number the routes
 * answer can be checked against the rows themselves.
 */
describe("billing: usage, invoices, job costs, session bills, reconciliation", () => {
  let api: RunningApi;
  let dbh: DbHandle;
  let drop: () => Promise<void>;
  let call: ReturnType<typeof apiClient>;
  const tenants: Record<"A" | "B", { id: string; key: string }> = {} as never;
  const ledger: Entry[] = [];
  const as = (t: "A" | "B", path: string) => call("GET", path, { key: tenants[t].key });
  const admin = (path: string) => call("GET", path, { key: ADMIN });

  beforeAll(async () => {
    const db = await createTestDatabase();
    drop = db.drop;
    dbh = openDb(db.url, { max: 2 });
    api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(), handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN });
    call = apiClient(api.url);
    for (const t of ["A", "B"] as const) {
      const r = await call("POST", "/admin/tenants", { key: ADMIN, body: { name: `usage ${t}` } });
      expect(r.status).toBe(200);
      tenants[t] = { id: r.body.id, key: r.body.apiKey };
    }
    for (const s of SESSIONS) await seedSession(s);
    await money("A", "credit", utc(2025, 0, 5), 10_000_000, "top-up");
    await money("A", "credit", utc(2025, 1, 3), 2_500_000, '=HYPERLINK("x"), promo');
    await money("A", "adjustment", utc(2025, 0, 20), -500, "goodwill correction");
    await money("B", "credit", utc(2025, 0, 6), 7_000_000, "B's top-up");
    await seedJobs();
  });
  afterAll(async () => {
    await api?.close();
    await dbh?.close();
    await drop?.();
  });

  async function seedSession(s: SessionSpec): Promise<void> {
    const tenantId = tenants[s.tenant].id;
    const transitions = s.transitions.map((t) => (t.state === "requested" ? { ...t, tenantId } : t));
    const requested = s.transitions[0]!;
    const requestedAt = Number(requested.seq.split("-")[0]);
    await dbh.sql`insert into worker_sessions (id, endpoint_id, tenant_id, gpu_type, state, requested_at, ended_at, seq_ms, seq_n)
                  values (${s.id}, ${s.endpointId}, ${tenantId}, ${s.gpuType ?? null}, ${s.observed.state}, ${new Date(requestedAt).toISOString()}::timestamptz,
                          ${s.observed.endedAt === null ? null : new Date(s.observed.endedAt).toISOString()}::timestamptz, 0, 0)`;
    if (s.billed === false) return;
    const input = { workerId: s.id, endpointTenantId: tenantId, transitions, weightsFetches: s.weightsFetches ?? [] };
    const charges = sessionCharges(input, DEFAULT_PRICES, s.chargedUntil ?? utc(2026, 0, 1));
    for (const c of charges) {
      await dbh.sql`insert into ledger_entries (tenant_id, key, kind, amount_micros, seconds, endpoint_id, worker_id, gpu_type, at)
                    values (${tenantId}, ${c.key}, 'charge', ${-c.micros}, ${c.seconds}, ${s.endpointId}, ${s.id}, ${c.gpuType}, ${new Date(c.at).toISOString()}::timestamptz)`;
      ledger.push({ tenantId, kind: "charge", at: c.at, endpointId: s.endpointId, gpuType: c.gpuType, seconds: c.seconds, amountMicros: -c.micros });
    }
    const settle = charges.find((c) => c.kind === "settle");
    await dbh.sql`insert into billing_sessions (worker_id, endpoint_id, tenant_id, transitions, weights_fetches, settled_at)
                  values (${s.id}, ${s.endpointId}, ${tenantId}, ${JSON.stringify(transitions)}::jsonb, ${JSON.stringify(s.weightsFetches ?? [])}::jsonb,
                          ${settle ? new Date(settle.at).toISOString() : null}::timestamptz)`;
  }

  async function money(t: "A" | "B", kind: "credit" | "adjustment", at: number, amountMicros: number, reason: string): Promise<void> {
    const tenantId = tenants[t].id;
    await dbh.sql`insert into ledger_entries (tenant_id, key, kind, amount_micros, at, reason)
                  values (${tenantId}, ${`${kind}:${tenantId}:${at}`}, ${kind}, ${amountMicros}, ${new Date(at).toISOString()}::timestamptz, ${reason})`;
    ledger.push({ tenantId, kind, at, endpointId: null, gpuType: null, seconds: null, amountMicros });
  }

  async function seedJobs(): Promise<void> {
    const jobs: [string, "A" | "B", string, string, string | null, number | null, number | null][] = [
      // id, tenant, endpoint, status, worker, startedAt, executionMs
      ["j1", "A", "ep-a1", "COMPLETED", "w1", T1 + 10_000, 12_345],
      ["j2", "A", "ep-a1", "COMPLETED", "w1", T1 + 40_000, 59_000],
      ["j3", "A", "ep-a1", "COMPLETED", "w2", T2 + 5000, 1000],
      ["j4", "A", "ep-a2", "IN_PROGRESS", "w3", T3 + 2000, null],
      ["j5", "A", "ep-a1", "COMPLETED", "w-gone", T2 + 9000, 5000],
      ["j6", "A", "ep-a2", "FAILED", "w6", T6 + 30_000, 2500],
      ["j7", "A", "ep-a1", "IN_QUEUE", null, null, null],
      ["jB", "B", "ep-b", "COMPLETED", "wB", TB + 2000, 10_000],
    ];
    for (const [id, t, ep, status, worker, startedAt, executionMs] of jobs) {
      const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
      await dbh.sql`insert into jobs (id, tenant_id, endpoint_id, status, worker_id, submitted_at, started_at, finished_at, execution_time_ms)
                    values (${id}, ${tenants[t].id}, ${ep}, ${status}, ${worker}, ${iso(startedAt === null ? T2 : startedAt - 100)}::timestamptz, ${iso(startedAt)}::timestamptz,
                            ${iso(startedAt !== null && executionMs !== null ? startedAt + executionMs : null)}::timestamptz, ${executionMs})`;
    }
  }

  /** The tenant's charges dated in [from, to), summed by `key` as the reports must: seconds and −amount. */
  function expected(t: "A" | "B", from: number, to: number, key: (e: Entry) => string | null) {
    const out: Record<string, { seconds: number; costMicros: number }> = {};
    for (const e of ledger.filter((x) => x.tenantId === tenants[t].id && x.kind === "charge" && x.at >= from && x.at < to)) {
      const k = String(key(e));
      out[k] = { seconds: (out[k]?.seconds ?? 0) + e.seconds!, costMicros: (out[k]?.costMicros ?? 0) - e.amountMicros };
    }
    return out;
  }
  const byKey = (groups: { key: string | null; seconds: number; costMicros: number }[]) => Object.fromEntries(groups.map((g) => [String(g.key), { seconds: g.seconds, costMicros: g.costMicros }]));
  /** −(sum of the tenant's charges in [from, to)), straight from PostgreSQL. */
  async function chargedInDb(t: "A" | "B", from: number, to: number): Promise<number> {
    const [row] = await dbh.sql`select coalesce(-sum(amount_micros), 0) as m from ledger_entries
                                where tenant_id = ${tenants[t].id} and kind = 'charge' and at >= ${new Date(from).toISOString()}::timestamptz and at < ${new Date(to).toISOString()}::timestamptz`;
    return pgSafeInt.parse(row!.m);
  }

  const JAN = utc(2025, 0, 1);
  const MAR = utc(2025, 2, 1);

  it("writes the ledger the reports read: charges per minute, settlements (one negative) as core/billing makes them", () => {
    const w1 = ledger.filter((e) => e.kind === "charge" && e.endpointId === "ep-a1" && e.gpuType === "AMPERE_80" && e.at < T4);
    expect(w1.map((e) => [e.seconds, e.amountMicros, new Date(e.at).toISOString()])).toEqual([
      [57, -57 * 760, "2025-01-31T23:58:00.000Z"],
      [60, -60 * 760, "2025-01-31T23:59:00.000Z"],
      [31, -31 * 760, "2025-02-01T00:00:30.500Z"],
    ]);
    const w5 = ledger.filter((e) => e.kind === "charge" && e.endpointId === "ep-a2" && e.gpuType === "AMPERE_80");
    expect(w5.map((e) => [e.seconds, e.amountMicros])).toEqual([[60, -45_600], [60, -45_600], [60, -45_600], [-90, 68_400]]);
  });

  it("groups usage by endpoint, UTC day and GPU type, each agreeing with the ledger to the micro-dollar", async () => {
    const q = `from=2025-01-01&to=2025-03-01T00:00:00Z`;
    const total = { totalSeconds: 588, totalCostMicros: 224_980 };
    expect(await chargedInDb("A", JAN, MAR)).toBe(224_980);

    const byEndpoint = await as("A", `/api/v1/usage?${q}&groupBy=endpoint`);
    expect(byEndpoint.status).toBe(200);
    expect(byEndpoint.body).toMatchObject({ from: "2025-01-01T00:00:00.000Z", to: "2025-03-01T00:00:00.000Z", groupBy: "endpoint", ...total });
    expect(byKey(byEndpoint.body.groups)).toEqual({ "ep-a1": { seconds: 228, costMicros: 114_080 }, "ep-a2": { seconds: 360, costMicros: 110_900 } });
    expect(byKey(byEndpoint.body.groups)).toEqual(expected("A", JAN, MAR, (e) => e.endpointId));

    const byGpu = await as("A", `/api/v1/usage?${q}&groupBy=gpuType`);
    expect(byGpu.body).toMatchObject(total);
    expect(byKey(byGpu.body.groups)).toEqual({
      AMPERE_80: { seconds: 238, costMicros: 180_880 },
      cpu: { seconds: 160, costMicros: 3200 },
      ADA_24: { seconds: 70, costMicros: 21_700 },
      AMPERE_16: { seconds: 120, costMicros: 19_200 },
    });
    expect(byKey(byGpu.body.groups)).toEqual(expected("A", JAN, MAR, (e) => e.gpuType));

    const byDay = await as("A", `/api/v1/usage?${q}&groupBy=day`);
    expect(byDay.body).toMatchObject(total);
    // w1's minutes fall on January 31, its settlement on February 1; w5's −90 s settlement nets inside its day.
    expect(byDay.body.groups).toEqual([
      { key: "2025-01-15", seconds: 80, costMicros: 1600 },
      { key: "2025-01-31", seconds: 117, costMicros: 88_920 },
      { key: "2025-02-01", seconds: 31, costMicros: 23_560 },
      { key: "2025-02-10", seconds: 70, costMicros: 21_700 },
      { key: "2025-02-12", seconds: 90, costMicros: 68_400 },
      { key: "2025-02-20", seconds: 80, costMicros: 1600 },
      { key: "2025-02-25", seconds: 120, costMicros: 19_200 },
    ]);
    expect(byKey(byDay.body.groups)).toEqual(expected("A", JAN, MAR, (e) => new Date(e.at).toISOString().slice(0, 10)));
    for (const r of [byEndpoint, byGpu, byDay]) {
      expect(r.body.groups.reduce((s: number, g: { costMicros: number }) => s + g.costMicros, 0)).toBe(r.body.totalCostMicros);
      expect(r.body.groups.reduce((s: number, g: { seconds: number }) => s + g.seconds, 0)).toBe(r.body.totalSeconds);
    }

    // The range is [from, to): an instant at `to` is out, one at `from` in; w4's minute at March 1 00:00 is March's.
    const march = await as("A", `/api/v1/usage?from=2025-03-01&to=2025-03-02&groupBy=gpuType`);
    expect(march.body).toMatchObject({ totalSeconds: 60, totalCostMicros: 45_600, groups: [{ key: "AMPERE_80", seconds: 60, costMicros: 45_600 }] });
    const justW1 = await as("A", `/api/v1/usage?from=2025-01-31T23:59:00Z&to=2025-02-01T00:00:30.500Z&groupBy=day`);
    expect(justW1.body.groups).toEqual([{ key: "2025-01-31", seconds: 60, costMicros: 45_600 }]);
    // An offset names the same instants.
    const offset = await as("A", `/api/v1/usage?from=${encodeURIComponent("2025-01-01T01:00:00+01:00")}&to=2025-03-01&groupBy=endpoint`);
    expect(offset.body).toMatchObject({ from: "2025-01-01T00:00:00.000Z", ...total });
  });

  it("defaults to the current UTC month up to now, on the log's clock", async () => {
    const r = await as("A", "/api/v1/usage");
    expect(r.status).toBe(200);
    const now = Date.now();
    const monthStart = new Date(Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), 1)).toISOString();
    expect(r.body).toMatchObject({ from: monthStart, groupBy: "endpoint", groups: [], totalSeconds: 0, totalCostMicros: 0 });
    expect(Math.abs(Date.parse(r.body.to) - now)).toBeLessThan(5000);
  });

  it("invoices a month: lines per endpoint and GPU type, a total equal to the ledger's charges, the month's credits", async () => {
    const jan = await as("A", "/api/v1/invoices/2025-01");
    expect(jan.status).toBe(200);
    expect(jan.body).toEqual({
      month: "2025-01",
      from: "2025-01-01T00:00:00.000Z",
      to: "2025-02-01T00:00:00.000Z",
      open: false,
      lines: [
        { endpointId: "ep-a1", gpuType: "AMPERE_80", seconds: 117, costMicros: 88_920 },
        { endpointId: "ep-a1", gpuType: "cpu", seconds: 80, costMicros: 1600 },
      ],
      totalSeconds: 197,
      totalMicros: 90_520,
      // The adjustment is no credit; B's credit is B's.
      credits: [{ at: "2025-01-05T00:00:00.000Z", amountMicros: 10_000_000, reason: "top-up" }],
      creditedMicros: 10_000_000,
    });
    expect(jan.body.totalMicros).toBe(await chargedInDb("A", JAN, utc(2025, 1, 1)));

    const feb = await as("A", "/api/v1/invoices/2025-02?format=json");
    expect(feb.body.lines).toEqual([
      { endpointId: "ep-a1", gpuType: "AMPERE_80", seconds: 31, costMicros: 23_560 },
      { endpointId: "ep-a2", gpuType: "ADA_24", seconds: 70, costMicros: 21_700 },
      { endpointId: "ep-a2", gpuType: "AMPERE_16", seconds: 120, costMicros: 19_200 },
      { endpointId: "ep-a2", gpuType: "AMPERE_80", seconds: 90, costMicros: 68_400 },
      { endpointId: "ep-a2", gpuType: "cpu", seconds: 80, costMicros: 1600 },
    ]);
    expect(feb.body.totalMicros).toBe(134_460);
    expect(feb.body.totalMicros).toBe(feb.body.lines.reduce((s: number, l: { costMicros: number }) => s + l.costMicros, 0));
    expect(feb.body.totalMicros).toBe(await chargedInDb("A", utc(2025, 1, 1), MAR));
    // The months add up to the usage of both.
    expect(jan.body.totalMicros + feb.body.totalMicros).toBe(224_980);

    // CSV: header, a row per line, the total, the credits; quoting and a formula neutralised.
    const csv = await as("A", "/api/v1/invoices/2025-02?format=csv");
    expect(csv.status).toBe(200);
    expect(csv.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    expect(csv.headers.get("content-disposition")).toBe('attachment; filename="invoice-2025-02.csv"');
    const rows = (csv.body as string).split("\r\n");
    expect(rows).toEqual([
      "kind,endpoint_id,gpu_type,seconds,micros,at,reason",
      "charge,ep-a1,AMPERE_80,31,23560,,",
      "charge,ep-a2,ADA_24,70,21700,,",
      "charge,ep-a2,AMPERE_16,120,19200,,",
      "charge,ep-a2,AMPERE_80,90,68400,,",
      "charge,ep-a2,cpu,80,1600,,",
      "total,,,391,134460,,",
      `credit,,,,2500000,2025-02-03T00:00:00.000Z,"'=HYPERLINK(""x""), promo"`,
      "",
    ]);
    const charges = rows.filter((r) => r.startsWith("charge,")).map((r) => Number(r.split(",")[4]));
    expect(charges.reduce((a, b) => a + b, 0)).toBe(Number(rows.find((r) => r.startsWith("total,"))!.split(",")[4]));

    // This month is open; a month without anything is empty, not missing.
    const now = new Date();
    const thisMonth = `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, "0")}`;
    expect((await as("A", `/api/v1/invoices/${thisMonth}`)).body).toMatchObject({ month: thisMonth, open: true, lines: [], totalMicros: 0, credits: [] });
    expect((await as("A", "/api/v1/invoices/2024-06")).body).toMatchObject({ lines: [], totalSeconds: 0, totalMicros: 0 });
    const emptyCsv = await as("A", "/api/v1/invoices/2024-06?format=csv");
    expect(emptyCsv.body).toBe("kind,endpoint_id,gpu_type,seconds,micros,at,reason\r\ntotal,,,0,0,,\r\n");
  });

  it("shows a tenant only its own usage, invoices and sessions", async () => {
    const b = await as("B", "/api/v1/usage?from=2025-01-01&to=2025-03-01&groupBy=endpoint");
    expect(b.body).toMatchObject({ groups: [{ key: "ep-b", seconds: 30, costMicros: 22_800 }], totalSeconds: 30, totalCostMicros: 22_800 });
    expect((await as("A", "/api/v1/usage?from=2025-01-01&to=2025-03-01&groupBy=endpoint")).body.groups.map((g: { key: string }) => g.key)).not.toContain("ep-b");
    const bJan = await as("B", "/api/v1/invoices/2025-01");
    expect(bJan.body).toMatchObject({ lines: [{ endpointId: "ep-b", gpuType: "AMPERE_80", seconds: 30, costMicros: 22_800 }], totalMicros: 22_800 });
    expect(bJan.body.credits).toEqual([{ at: "2025-01-06T00:00:00.000Z", amountMicros: 7_000_000, reason: "B's top-up" }]);
    expect((await as("B", "/api/v1/invoices/2025-02")).body).toMatchObject({ lines: [], totalMicros: 0, credits: [] });

    // Another tenant's session is indistinguishable from a missing one.
    expect((await as("B", "/api/v1/billing/sessions/w1")).status).toBe(404);
    expect((await as("A", "/api/v1/billing/sessions/wB")).status).toBe(404);
    expect((await as("A", "/api/v1/billing/sessions/w-nope")).status).toBe(404);
    expect((await as("A", "/api/v1/billing/sessions/w8")).status).toBe(404); // never metered
    expect((await as("B", "/api/v1/jobs/j1")).status).toBe(404);
    for (const path of ["/api/v1/usage", "/api/v1/invoices/2025-01", "/api/v1/billing/sessions/w1"]) expect((await call("GET", path)).status, path).toBe(401);
  });

  it("refuses bad ranges, groupings, months and formats with 400 naming the field", async () => {
    const refused = async (path: string, expected: string[], key: "A" | "admin" = "A") => {
      const r = key === "admin" ? await admin(path) : await as("A", path);
      expect(r.status, path).toBe(400);
      expect(r.body.code).toBe("invalid_request");
      expect(paths(r.body), `${path}: ${JSON.stringify(r.body)}`).toEqual(expected);
    };
    for (const base of ["/api/v1/usage", "/admin/billing/reconcile"]) {
      const who = base.startsWith("/admin") ? "admin" : "A";
      await refused(`${base}?from=yesterday`, ["from"], who);
      await refused(`${base}?from=2025-01-01&to=2025-13-01`, ["to"], who);
      await refused(`${base}?from=2025-01-01T00:00:00&to=2025-02-01`, ["from"], who); // no offset: whose local time?
      await refused(`${base}?from=1969-12-31&to=2025-02-01`, ["from"], who);
      await refused(`${base}?from=2025-02-01&to=2025-01-01`, ["from"], who);
      await refused(`${base}?from=2025-01-01&to=2026-01-03`, ["to"], who); // 367 days
      await refused(`${base}?from=2020-01-01`, ["from"], who); // to defaults to now: years apart
      await refused(`${base}?to=2020-01-01`, ["to"], who); // before the current month, from's default
      expect((await (who === "admin" ? admin : (p: string) => as("A", p))(`${base}?from=2025-01-01&to=2026-01-02`)).status).toBe(200); // 366 days
    }
    await refused("/api/v1/usage?groupBy=week", ["groupBy"]);
    await refused("/api/v1/usage?groupBy=Day", ["groupBy"]);
    for (const month of ["2025-13", "2025-1", "2025-00", "25-01", "2025-01-01", "abcd", "1969-12", "2025-01x"]) await refused(`/api/v1/invoices/${month}`, ["month"]);
    await refused("/api/v1/invoices/9999-12", ["month"]);
    const next = new Date();
    next.setUTCMonth(next.getUTCMonth() + 1, 1);
    await refused(`/api/v1/invoices/${next.toISOString().slice(0, 7)}`, ["month"]);
    await refused("/api/v1/invoices/2025-01?format=xml", ["format"]);
    expect((await call("GET", "/admin/billing/reconcile", { key: tenants.A.key })).status).toBe(401);
  });

  it("prices each finished job at its session's GPU type: exact µ$ on the record and in the listing", async () => {
    const job = async (id: string) => {
      const r = await as("A", `/api/v1/jobs/${id}`);
      expect(r.status, id).toBe(200);
      return r.body;
    };
    // 12.345 s → 13 s at 760 µ$/s; 59 s; 1 s of cpu (the session has no GPU) at 20; 2.5 s → 3 s of cpu (a failure still ran).
    expect(await job("j1")).toMatchObject({ workerId: "w1", executionTime: 12_345, billedSeconds: 13, costMicros: 9880 });
    expect(await job("j2")).toMatchObject({ billedSeconds: 59, costMicros: 44_840 });
    expect(await job("j3")).toMatchObject({ billedSeconds: 1, costMicros: 20 });
    expect(await job("j6")).toMatchObject({ status: "FAILED", billedSeconds: 3, costMicros: 60 });
    // Running, never started, or its session gone: no cost yet.
    expect(await job("j4")).toMatchObject({ status: "IN_PROGRESS", billedSeconds: null, costMicros: null });
    expect(await job("j7")).toMatchObject({ status: "IN_QUEUE", billedSeconds: null, costMicros: null });
    expect(await job("j5")).toMatchObject({ workerId: "w-gone", billedSeconds: null, costMicros: null });
    expect((await as("B", "/api/v1/jobs/jB")).body).toMatchObject({ billedSeconds: 10, costMicros: 7600 });

    const list = await as("A", "/api/v1/jobs?limit=500");
    expect(list.status).toBe(200);
    const listed = Object.fromEntries(list.body.items.map((j: { id: string; costMicros: number | null; billedSeconds: number | null }) => [j.id, [j.billedSeconds, j.costMicros]]));
    expect(listed).toEqual({ j1: [13, 9880], j2: [59, 44_840], j3: [1, 20], j4: [null, null], j5: [null, null], j6: [3, 60], j7: [null, null] });
  });

  it("bills a session line by line: the ledger's total, the meter, each job's share and the idle time", async () => {
    const r = await as("A", "/api/v1/billing/sessions/w1");
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      workerId: "w1",
      endpointId: "ep-a1",
      gpuType: "AMPERE_80",
      start: "2025-01-31T23:58:00.000Z",
      end: "2025-02-01T00:00:30.500Z",
      endedBy: "exited",
      billedSeconds: 148,
      costMicros: 112_480,
      metered: { seconds: 148, costMicros: 112_480 },
      weightsFetchMs: 3000,
      pausedMs: 0,
      jobCount: 2,
      jobs: [
        { jobId: "j1", startedAt: "2025-01-31T23:58:10.000Z", executionMs: 12_345, seconds: 13, costMicros: 9880 },
        { jobId: "j2", startedAt: "2025-01-31T23:58:40.000Z", executionMs: 59_000, seconds: 59, costMicros: 44_840 },
      ],
      // Ready at +5 s, ended at +150.5 s: 145.5 s, less 71.345 s of jobs, is 74.155 s → 75 s.
      idle: { seconds: 75, costMicros: 57_000 },
    });
    // The shares explain the bill and never exceed it.
    expect(13 + 59 + 75).toBeLessThanOrEqual(r.body.billedSeconds);

    const lost = await as("A", "/api/v1/billing/sessions/w5");
    expect(lost.body).toMatchObject({ endedBy: "lost", end: new Date(T5 + 90_000).toISOString(), billedSeconds: 90, costMicros: 68_400, metered: { seconds: 90, costMicros: 68_400 }, jobs: [], idle: { seconds: 88, costMicros: 66_880 } });

    // Open: charged its first two minutes; the meter runs to now.
    const open = await as("A", "/api/v1/billing/sessions/w7");
    expect(open.body).toMatchObject({ end: null, endedBy: null, billedSeconds: 120, costMicros: 19_200 });
    expect(open.body.metered.seconds).toBeGreaterThan(120);

    // A running job has no share yet and is busy up to now: only the second before it started is idle.
    const running = await as("A", "/api/v1/billing/sessions/w3");
    expect(running.body).toMatchObject({ billedSeconds: 70, jobs: [{ jobId: "j4", executionMs: null, seconds: null, costMicros: null }], idle: { seconds: 1, costMicros: 310 } });
  });

  it("reconciles billed seconds with observed lifetimes, explaining every difference over a second", async () => {
    const r = await admin("/admin/billing/reconcile?from=2025-01-01&to=2025-03-01");
    expect(r.status).toBe(200);
    expect(r.body.nextFrom).toBeNull();
    // Every session requested in the range, every tenant's, oldest first; w4 (March 1) is out.
    expect(r.body.sessions.map((s: { workerId: string }) => s.workerId)).toEqual(["w2", "wB", "w1", "w3", "w5", "w6", "w7", "w8"]);
    const session = (id: string) => r.body.sessions.find((s: { workerId: string }) => s.workerId === id);
    expect(session("w2")).toMatchObject({ tenantId: tenants.A.id, observedMs: 80_000, observedSeconds: 80, billedSeconds: 80, billedMicros: 1600, settled: true });
    expect(session("wB")).toMatchObject({ tenantId: tenants.B.id, observedSeconds: 30, billedSeconds: 30 });
    expect(session("w1")).toMatchObject({ observedMs: 150_500, observedSeconds: 151, billedSeconds: 148, meter: { seconds: 148, micros: 112_480, endedBy: "exited", weightsFetchMs: 3000, pausedMs: 0 } });

    const differences = Object.fromEntries(r.body.differences.map((d: { workerId: string }) => [d.workerId, d]));
    // Matching sessions (w2, w3, wB) are not listed.
    expect(Object.keys(differences).sort()).toEqual(["w1", "w5", "w6", "w7", "w8"]);
    expect(differences.w5).toMatchObject({ billedSeconds: 90, observedSeconds: 190, differenceSeconds: -100, explanation: "lost" });
    expect(differences.w5.detail).toContain(new Date(T5 + 90_000).toISOString());
    expect(differences.w6).toMatchObject({ billedSeconds: 80, observedSeconds: 100, differenceSeconds: -20, explanation: "weights_fetch" });
    expect(differences.w6.detail).toContain("20000 ms");
    expect(differences.w1).toMatchObject({ billedSeconds: 148, observedSeconds: 151, differenceSeconds: -3, explanation: "weights_fetch" });
    expect(differences.w7).toMatchObject({ billedSeconds: 120, explanation: "open" });
    expect(differences.w8).toMatchObject({ billedSeconds: 0, observedSeconds: 300, explanation: "unexplained" });
    expect(differences.w8.detail).toContain("no billing record");

    // A range holding only matching sessions lists no difference.
    const quiet = await admin("/admin/billing/reconcile?from=2025-01-15&to=2025-01-21");
    expect(quiet.body.sessions.map((s: { workerId: string }) => s.workerId)).toEqual(["w2", "wB"]);
    expect(quiet.body.differences).toEqual([]);
  });
});
