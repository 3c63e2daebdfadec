import { randomBytes } from "node:crypto";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ApiDeps } from "../apps/api/api-deps.ts";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { createApp } from "../apps/api/app.ts";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { openDb, type DbHandle } from "../core/db/client.ts";
import type { LogLine } from "../core/log/process-log.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { defaultHandlerDir } from "../core/config/handler-dirs.ts";
import type { TenantLimits } from "../core/contracts/tenant-limits.ts";
import { apiClient } from "./support/api-client.ts";
import {
  contentType,
  extraHeaders,
  headerSafe,
  headerValue,
  lenientDecode,
  operationsOf,
  pathSegment,
  pct,
  Probe,
  queryString,
  requestBody,
  send,
  validBody,
  type Operation,
  type Outcome,
} from "./support/http-fuzz.ts";
import { encodeJson, fieldPaths, fitsBranches, hasPath, NASTY_STRINGS, RawJson, setAt, validValue, type FieldHints, type JsonSchema } from "./support/json-fuzz.ts";
import { clearPrefix, createTestDatabase, TEST_REDIS_URL, uniquePrefix, waitFor } from "./support/services.ts";

/*
 * Every route of the OpenAPI document, fuzzed through a real API (Postgres, Redis, no scheduler:
 * jobs stay queued; the control plane projects job records, so the record routes find some) in
 * body, query, path and headers: no answer may be a 5xx, every 4xx is the API's JSON error
 * (OpenAI's shape under /v2/{ep}/openai/), and the API is healthy afterwards. Routes are read
 * from the document, so a new route is fuzzed without touching this file.
 *
 * Replay a failure: HEARTH_FUZZ_SEED=<the run's seed, printed first and in each failure> npx vitest
 * run test/api-fuzz.test.ts -t "<test>", plus HEARTH_FUZZ_PATH=<fast-check's path> for just the
 * counterexample (each property derives its own seed from the run's; ids are drawn by position).
 * More cases: HEARTH_FUZZ_RUNS=<runs per route> (default 80).
 */

const ADMIN = `fuzz-admin-${randomBytes(12).toString("hex")}`;
const RUNS = Number(process.env.HEARTH_FUZZ_RUNS ?? 80);
const SEED = Number(process.env.HEARTH_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MB = 1024 * 1024;
const LIMITS: TenantLimits = { maxEndpoints: 100_000, maxWorkers: 10_000, maxWorkersMin: 10_000, maxQueuedJobsPerEndpoint: 10_000_000, maxInputBytes: 20 * MB, spendPerHourMicros: 100_000_000 };
const echoModule = join(defaultHandlerDir, "echo.mjs");
const echo = { kind: "handler", module: echoModule };

// Building the app touches no dependency, so the document is read before any server exists.
const DOC = createApp({ adminToken: ADMIN, handlerDirs: [] } as unknown as ApiDeps).getOpenAPI31Document({ openapi: "3.1.0", info: { title: "fuzz", version: "1" } });
const OPERATIONS = operationsOf(DOC);

/** Query parameters that hold a request open that many ms: always sent, never longer (no scheduler runs the jobs). */
const HOLD_PARAMS = { wait: 1000 };
/** OpenAI generation waits for a worker that never comes; such a request is abandoned quickly, and that is not a failure. */
const mayHold = (path: string) => /^\/v2\/[^/]+\/openai\//.test(path);
const holdMs = (path: string) => (mayHold(path) ? 700 : 8000);
/** Where the API answers errors in OpenAI's shape: the path as Hono sees it (dot segments resolved, `%2F` kept). */
const openAIPath = (target: string) => mayHold(decodeURIPath(pathOf(target)));
/** The path of a request-target as the server parses it: `//%3A` is a path there, not a protocol-relative URL, so it is appended to an origin rather than resolved against one. */
const pathOf = (target: string) => new URL(`http://x${target}`).pathname;
const decodeURIPath = (p: string) => {
  try {
    return decodeURI(p);
  } catch {
    return p;
  }
};

/** What the fixtures made: the ids substituted into paths, and the credentials. */
interface World {
  key: string;
  otherKey: string;
  revokedKey: string;
  tenantIds: string[];
  victimTenantId: string;
  handlerEp: string;
  openaiEp: string;
  deletedEp: string;
  otherEp: string;
  patchableEps: string[];
  deletableEps: string[];
  jobs: string[];
  /** Jobs for /cancel, which would otherwise leave no job in the queue for the other routes. */
  cancellableJobs: string[];
  otherJob: string;
  /** A `nextCursor` of GET /api/v1/jobs. */
  cursor: string;
  deletableKeys: string[];
}

/** The part of a request that is hostile; the others are valid. */
type Focus = "body" | "query" | "path" | "headers" | "auth" | "everything";
const FOCUS = fc.constantFrom<Focus>("body", "body", "body", "query", "path", "headers", "auth", "everything");

interface Expectation {
  route: string;
  holdMs: number;
  mayHold: boolean;
  expect401: boolean;
}

describe("API fuzz: no route answers 5xx", () => {
  let api: RunningApi;
  let drop: () => Promise<void>;
  let dbh: DbHandle;
  let control: ControlPlane;
  const controlErrors: LogLine[] = [];
  let origin: { host: string; port: number };
  let w: World;
  const redisPrefix = uniquePrefix();
  const serverErrors: { at: number; line: string }[] = [];
  const failures = new Map<string, string>();
  const stats = new Map<string, { cases: number; statuses: Map<number, number>; held: number }>();
  const consoleError = console.error;

  beforeAll(async () => {
    console.log(`api-fuzz: seed ${SEED}, ${RUNS} runs per route, ${OPERATIONS.length} routes`);
    // Anything else in this process that prints an error (a library) is kept with them.
    console.error = (...args: unknown[]) => {
      serverErrors.push({ at: Date.now(), line: args.map(String).join(" ") });
      consoleError(...args);
    };
    const db = await createTestDatabase();
    drop = db.drop;
    api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix, handlerDirs: [defaultHandlerDir], port: 0, host: "127.0.0.1", adminToken: ADMIN, limitDefaults: LIMITS }, {
      // The API logs an unexpected error (with its stack) through its log: collected here, as one JSON line each.
      log: (line) => void serverErrors.push({ at: Date.now(), line: JSON.stringify(line) }),
    });
    origin = { host: "127.0.0.1", port: api.port };
    dbh = openDb(db.url, { max: 2 });
    control = new ControlPlane({ redis: api.deps.redis, sql: dbh.sql, keys: new RedisKeys(redisPrefix), log: (l) => void (l.level === "error" && controlErrors.push(l)), blockMs: 100, trimIntervalMs: 5000 });
    control.start();
    w = await buildWorld(apiClient(api.url));
  });

  afterAll(async () => {
    console.error = consoleError;
    const redis = api?.deps.redis;
    await control?.stop();
    await dbh?.close();
    if (redis) await clearPrefix(redis, redisPrefix).catch(() => {});
    await api?.close();
    await drop?.();
  });

  async function buildWorld(call: ReturnType<typeof apiClient>): Promise<World> {
    const ok = async (method: string, path: string, opts: Parameters<typeof call>[2]) => {
      const r = await call(method, path, opts);
      expect(r.status, `${method} ${path}: ${JSON.stringify(r.body)}`).toBe(200);
      return r.body;
    };
    const tenant = () => ok("POST", "/admin/tenants", { key: ADMIN, body: { name: "fuzz" } }) as Promise<{ id: string; apiKey: string }>;
    const [main, other, victim] = [await tenant(), await tenant(), await tenant()];
    const endpoint = async (key: string, engine: object = echo) => (await ok("POST", "/api/v1/endpoints", { key, body: { name: "fuzz", engine, workersMax: 0 } })).id as string;
    const times = <T>(n: number, f: () => Promise<T>) => Promise.all(Array.from({ length: n }, f));
    const handlerEp = await endpoint(main.apiKey);
    const deletedEp = await endpoint(main.apiKey);
    await ok("DELETE", `/api/v1/endpoints/${deletedEp}`, { key: main.apiKey });
    const otherEp = await endpoint(other.apiKey);
    const run = async (key: string, ep: string) => (await ok("POST", `/v2/${ep}/run`, { key, body: { input: { fuzz: true } } })).id as string;
    const jobs = await times(4, () => run(main.apiKey, handlerEp));
    await ok("POST", `/v2/${handlerEp}/cancel/${jobs[0]}`, { key: main.apiKey }); // a cancelled job, which /retry may take
    // The control plane has projected the jobs' records: a page of two has a next cursor.
    const page = await waitFor(async () => {
      const r = await call("GET", "/api/v1/jobs?limit=2", { key: main.apiKey });
      return r.status === 200 && r.body.items.length === 2 && typeof r.body.nextCursor === "string" ? r.body : undefined;
    });
    const revoked = await ok("POST", "/api/v1/keys", { key: main.apiKey, body: { name: "revoked" } });
    await ok("DELETE", `/api/v1/keys/${revoked.id}`, { key: main.apiKey });
    return {
      key: main.apiKey,
      otherKey: other.apiKey,
      revokedKey: revoked.key,
      tenantIds: [main.id, other.id, victim.id],
      victimTenantId: victim.id,
      handlerEp,
      openaiEp: await endpoint(main.apiKey, { kind: "openai", profile: "vllm", model: "https://huggingface.co/org/model" }),
      deletedEp,
      otherEp,
      patchableEps: await times(3, () => endpoint(main.apiKey)),
      deletableEps: await times(4, () => endpoint(main.apiKey)),
      jobs,
      cancellableJobs: await times(4, () => run(main.apiKey, handlerEp)),
      otherJob: await run(other.apiKey, otherEp),
      cursor: page.nextCursor as string,
      deletableKeys: await times(4, async () => (await ok("POST", "/api/v1/keys", { key: main.apiKey, body: { name: "doomed" } })).id as string),
    };
  }

  /** Realistic values by field name, so that valid-looking requests reach the handlers. */
  const hints = (): FieldHints => ({
    module: [echoModule, `file://${echoModule}`, join(defaultHandlerDir, "..", "examples", "noop.mjs"), join(defaultHandlerDir, "nope.mjs"), defaultHandlerDir, "/etc/passwd", "file://host/x.mjs"],
    model: ["https://huggingface.co/org/model", "/tmp/model.gguf", "s3://bucket/model", "file:///etc/passwd", "http://127.0.0.1:6379/"],
    args: [{}, {}, { "trust-remote-code": true }, { "chat-template": "/etc/passwd" }, { "max-model-len": 8192 }],
    env: [{}, { FUZZ: "x" }, { HF_HOME: "/tmp", FUZZ_SECRET: { value: "s", secret: true } }],
    webhook: ["https://example.com/hook", "http://127.0.0.1:6379/"],
    role: ["user", "system", "assistant"],
    endpointId: [w.handlerEp, w.otherEp, w.deletedEp],
    cursor: [w.cursor, `${w.cursor}x`, w.cursor.slice(0, -2)],
    "idempotency-key": ["fuzz-key-1", "fuzz-key-2"],
    // Billing: priced GPU types, instants ahead and modest credits, so that valid-looking versions, endpoints and credits get through.
    gpuTypeIds: [[], ["AMPERE_16"], ["cpu", "NVIDIA L4"]],
    prices: [{ AMPERE_16: 170 }, { cpu: 25, "NVIDIA L4": 200 }, { "FUZZ GPU": 10 }],
    adds: [[], ["FUZZ GPU"]],
    effectiveFrom: [new Date(Date.now() + 30 * 86_400_000).toISOString(), new Date(Date.now() + 400 * 86_400_000).toISOString()],
    amountMicros: [1, 1_000_000],
  });

  /**
   * Ids for a path parameter: `live` ones the route works on, first the one it works on best, and
   * `others` (deleted, another tenant's, unknown). Destructive routes (DELETE, PATCH, PUT, purge)
   * get their own victims, so that the other routes' fixtures stay in place.
   */
  function realIds(op: Operation, name: string): { live: string[]; others: string[] } {
    const segments = op.path.split("/");
    const before = segments[segments.indexOf(`{${name}}`) - 1] ?? "";
    const destructive = ["DELETE", "PATCH", "PUT"].includes(op.method) || op.path.endsWith("/purge-queue");
    if (name === "ep" || before === "endpoints") {
      const others = [w.deletedEp, w.otherEp];
      if (op.method === "DELETE") return { live: w.deletableEps, others };
      if (destructive) return { live: w.patchableEps, others };
      // A job's routes take the endpoint its jobs are on.
      return op.path.includes("{id}") && name === "ep" ? { live: [w.handlerEp], others: [w.openaiEp, ...others] } : { live: [w.handlerEp, w.openaiEp], others };
    }
    if (before === "tenants") return destructive ? { live: [w.victimTenantId], others: ["tn_nosuchtenant"] } : { live: w.tenantIds, others: [] };
    if (before === "keys") return { live: w.deletableKeys, others: [] };
    if (before === "cancel") return { live: w.cancellableJobs, others: [w.otherJob] };
    if (["jobs", "status", "status-sync", "stream", "retry"].includes(before)) return { live: [...w.jobs].reverse(), others: [w.otherJob] };
    return { live: [], others: [] };
  }

  interface AuthCase {
    name: string;
    value?: string;
    /** A credential that must not pass: the answer is 401 whatever else the request holds. */
    bad: boolean;
  }

  function authCases(role: Operation["auth"]): { good: AuthCase[]; bad: AuthCase[]; neutral: AuthCase[] } {
    const mine = role === "admin" ? ADMIN : w.key;
    const good = [
      { name: "bearer", value: `Bearer ${mine}`, bad: false },
      { name: "lowercase bearer", value: `bearer ${mine}`, bad: false },
      { name: "padded", value: `  Bearer   ${mine}  `, bad: false },
      { name: "raw key", value: mine, bad: false },
    ];
    const bad = [
      { name: "missing", bad: true },
      { name: "empty", value: "", bad: true },
      { name: "scheme only", value: "Bearer", bad: true },
      { name: "scheme and space", value: "Bearer ", bad: true },
      { name: "basic", value: "Basic dXNlcjpwYXNz", bad: true },
      { name: "other scheme", value: `Token ${mine}`, bad: true },
      { name: "key plus a char", value: `Bearer ${mine}x`, bad: true },
      { name: "key minus a char", value: `Bearer ${mine.slice(0, -1)}`, bad: true },
      { name: "two tokens", value: `Bearer ${mine} ${mine}`, bad: true },
      { name: "revoked key", value: `Bearer ${w.revokedKey}`, bad: true },
      { name: "wrong role", value: `Bearer ${role === "admin" ? w.key : ADMIN}`, bad: true },
      { name: "latin-1 bytes", value: headerSafe(`Bearer ${mine.slice(0, -1)}é`), bad: true },
      { name: "4 KB token", value: `Bearer ${"k".repeat(4000)}`, bad: true },
      ...NASTY_STRINGS.slice(0, 12).map((s) => ({ name: `nasty ${JSON.stringify(s)}`, value: headerSafe(`Bearer ${s}`), bad: true })),
    ];
    // Another tenant's key is a valid key: the answer depends on the route (its own list, or 404 for our ids).
    const neutral = role === "admin" ? [] : [{ name: "another tenant's key", value: `Bearer ${w.otherKey}`, bad: false }];
    return { good, bad, neutral };
  }

  /** Credentials for `role`: good ones, or bad ones (`badWeight` to 1 good). */
  const authFor = (role: Operation["auth"], fuzzed: boolean, badWeight = 3): fc.Arbitrary<AuthCase> => {
    const { good, bad, neutral } = authCases(role);
    if (!fuzzed) return fc.constantFrom(...good);
    return fc.oneof({ weight: badWeight, arbitrary: fc.constantFrom(...bad, ...neutral) }, { weight: 1, arbitrary: fc.constantFrom(...good) });
  };

  function fill(op: Operation, segments: readonly string[]): string {
    let path = op.path;
    op.params.filter((p) => p.in === "path").forEach((p, i) => (path = path.replace(`{${p.name}}`, segments[i] ?? "x")));
    return path;
  }

  /**
   * A fuzzed request for `op`, every part drawn from the route's own declaration. One part is in
   * focus and hostile, the others valid, so that most requests get past the checks before it into
   * validation and the handler; now and then every part is hostile at once.
   */
  function probeFor(op: Operation, focus: fc.Arbitrary<Focus>, badAuthWeight?: number): fc.Arbitrary<{ probe: Probe; auth: AuthCase; focus: Focus }> {
    const h = hints();
    const pathParams = op.params.filter((p) => p.in === "path");
    const headerParams = op.params.filter((p) => p.in === "header");
    const segment = (name: string, fuzzed: boolean) => {
      const { live, others } = realIds(op, name);
      if (fuzzed) return pathSegment([...live, ...others]);
      return live.length > 0 ? fc.constantFrom(...live).map(pct) : fc.stringMatching(/^[a-z0-9-]{1,24}$/);
    };
    return focus.chain((f) => {
      const on = (part: Focus) => f === part || f === "everything";
      return fc
        .record({
          segments: fc.tuple(...pathParams.map((p) => segment(p.name, on("path")))),
          query: queryString(DOC, op, h, HOLD_PARAMS, on("query")),
          auth: authFor(op.auth, on("auth"), badAuthWeight),
          contentType: on("headers") ? contentType() : fc.constant("application/json"),
          declared: fc.tuple(...headerParams.map((p) => headerValue(DOC, p, h, on("headers")))),
          extra: on("headers") ? extraHeaders() : fc.constant([]),
          body: on("body") ? requestBody(DOC, op, h) : validBody(DOC, op, h),
          chunked: fc.boolean(),
        })
        .map((r) => {
          const headers: Record<string, string> = {};
          if (r.auth.value !== undefined) headers.authorization = r.auth.value;
          if (r.contentType !== undefined) headers["content-type"] = r.contentType;
          headerParams.forEach((p, i) => r.declared[i] !== undefined && (headers[p.name] = r.declared[i]!));
          for (const [k, v] of r.extra) headers[k] = v;
          return { probe: new Probe(op.method, `${fill(op, r.segments)}${r.query}`, headers, r.body, r.chunked), auth: r.auth, focus: f };
        });
    });
  }

  /** Sends one request and judges its answer; throws (for fast-check to shrink) with a reproduction. */
  async function exchange(probe: Probe, e: Expectation, field = ""): Promise<Outcome> {
    const started = Date.now();
    const outcome = await send(origin, probe, e.holdMs);
    count(e.route, outcome);
    const problem = verdict(probe, outcome, e);
    if (problem === undefined) return outcome;
    const path = pathOf(probe.target);
    const logs = serverErrors
      .filter((l) => l.at >= started - 5 && l.at <= Date.now() + 5)
      .filter((l) => !l.line.includes('"path"') || l.line.includes(JSON.stringify(decodeURIPath(path)).slice(1, -1)))
      .map((l) => l.line);
    const answer = outcome.kind === "answer" ? `${outcome.status} ${outcome.text.slice(0, 500)}` : JSON.stringify(outcome);
    const report = `${e.route}: ${problem} (run seed ${SEED})\n  request: ${probe.repro()}\n  answer: ${answer}\n  server log: ${logs.join("\n    ") || "(nothing)"}`;
    failures.set(`${e.route} ${field}: ${problem}`, report); // shrinking overwrites: the last is the smallest
    throw new Error(report);
  }

  function verdict(probe: Probe, outcome: Outcome, e: Expectation): string | undefined {
    if (outcome.kind === "transport") return `no HTTP answer (${outcome.error})`;
    if (outcome.kind === "held") return e.mayHold ? undefined : `no answer within ${outcome.ms} ms`;
    const { status } = outcome;
    if (status >= 500) return `answered ${status}`;
    if (e.expect401 && status !== 401) return `answered ${status} to a credential that must get 401`;
    if (status < 400) return undefined;
    let body: any;
    try {
      body = JSON.parse(outcome.text);
    } catch {
      return `answered ${status} with a body that is not JSON`;
    }
    if (openAIPath(probe.target)) {
      if (typeof body?.error?.message !== "string" || typeof body?.error?.type !== "string") return `answered ${status} without OpenAI's {error: {message, type}}`;
    } else if (typeof body?.error !== "string") return `answered ${status} without an error field`;
    return undefined;
  }

  function count(route: string, outcome: Outcome): void {
    const s = stats.get(route) ?? { cases: 0, statuses: new Map<number, number>(), held: 0 };
    stats.set(route, s);
    s.cases++;
    if (outcome.kind === "held") s.held++;
    if (outcome.kind === "answer") s.statuses.set(outcome.status, (s.statuses.get(outcome.status) ?? 0) + 1);
  }

  /**
   * Each declared field of the body, once with each wrong type, on a body the route accepted (a
   * valid-looking sample that got a 2xx and holds that field, or its union branch), so that every
   * field is tried for certain. Returns the failures instead of stopping at the first, one per field.
   */
  async function sweepWrongTypes(op: Operation, schema: JsonSchema, e: Expectation): Promise<Error[]> {
    const errors: Error[] = [];
    const caught = (err: Error) => void errors.push(err);
    const path = fill(op, op.params.filter((p) => p.in === "path").map((p) => pct(realIds(op, p.name).live[0] ?? "x")));
    const holds = Object.entries(HOLD_PARAMS).filter(([name]) => op.params.some((p) => p.in === "query" && p.name === name));
    const target = `${path}${holds.length > 0 ? `?${holds.map(([k, v]) => `${k}=${v}`).join("&")}` : ""}`;
    const headers = { authorization: `Bearer ${op.auth === "admin" ? ADMIN : w.key}`, "content-type": "application/json" };
    const probe = (kind: string, body: unknown) => new Probe(op.method, target, headers, { kind, bytes: Buffer.from(encodeJson(body)) }, false);

    const typed = fieldPaths(DOC, schema).filter((f) => Object.keys(f.schema).some((k) => ["type", "enum", "properties", "oneOf", "anyOf", "const"].includes(k)));
    // Bases the route accepted, enough of them that each field sits in one (a union's branches need a base each).
    const candidates = [
      ...fc.sample(validValue(DOC, schema, { hints: hints(), allFields: true }), { seed: seedFor(routeName(op)), numRuns: 16 }),
      ...fc.sample(validValue(DOC, schema, { hints: hints() }), { seed: seedFor(routeName(op)), numRuns: 16 }),
    ];
    const bases: unknown[] = [];
    const uncovered = new Set(typed.map((f) => f.path.join(".")));
    for (const c of candidates) {
      if (uncovered.size === 0 || bases.length >= 6) break;
      const covers = typed.filter((f) => uncovered.has(f.path.join(".")) && hasPath(c, f.path) && fitsBranches(c, f));
      if (bases.length > 0 && covers.length === 0) continue;
      const o = await exchange(probe("valid", c), e).catch(caught);
      if (!o || !((o.kind === "answer" && o.status < 300) || o.kind === "held")) continue;
      bases.push(c);
      for (const f of covers) uncovered.delete(f.path.join("."));
    }
    for (const f of typed) {
      const fits = bases.filter((b) => fitsBranches(b, f));
      const base = fits.find((b) => hasPath(b, f.path)) ?? fits.find((b) => hasPath(b, f.path.slice(0, -1))) ?? fits[0] ?? bases[0] ?? candidates[0];
      for (const wrong of [null, true, 0, "x", [], {}, "\u0000", "\ud800", new RawJson("1e400")]) {
        const failed = await exchange(probe(`wrong ${f.path.join(".")}`, setAt(base, f.path, wrong)), e, f.path.join(".")).then(() => false, (err: Error) => (caught(err), true));
        if (failed) break; // one failure per field is enough
      }
    }
    return errors;
  }

  /** Each property its own seed, derived from the run's, so that GET and POST of one path draw differently. */
  const seedFor = (name: string) => [...name].reduce((h, ch) => Math.imul(h ^ ch.charCodeAt(0), 16777619), SEED ^ 2166136261) | 0;
  const assertOptions = (name: string, numRuns: number) => ({
    numRuns,
    seed: seedFor(name),
    // fast-check's counterexample `path`, to replay that one case (with -t naming its test).
    ...(process.env.HEARTH_FUZZ_PATH && { path: process.env.HEARTH_FUZZ_PATH }),
    interruptAfterTimeLimit: 90_000,
  });
  /** A route that holds valid requests (`wait`) gets half the runs: each costs up to its cap. */
  const runsFor = (op: Operation) => (op.params.some((p) => p.in === "query" && p.name in HOLD_PARAMS) ? Math.ceil(RUNS / 2) : RUNS);
  const routeName = (op: Operation) => `${op.method} ${op.path}`;
  const expectation = (route: string, path: string, expect401 = false): Expectation => ({ route, holdMs: holdMs(path), mayHold: mayHold(path), expect401 });

  it("fuzzes every route the served document declares", async () => {
    const served = (await (await fetch(`${api.url}/openapi.json`)).json()) as { paths: Record<string, object> };
    expect(new Set(operationsOf(served).map(routeName))).toEqual(new Set(OPERATIONS.map(routeName)));
    expect(OPERATIONS.length).toBeGreaterThan(20);
  });

  for (const op of OPERATIONS) {
    const route = routeName(op);
    it.concurrent(route, async () => {
      const e = expectation(route, op.path);
      const sweepErrors = op.body ? await sweepWrongTypes(op, op.body.schema, e) : [];
      await fc.assert(
        // With a hostile path too, a bad credential may meet a route that does not exist (404) first.
        fc.asyncProperty(probeFor(op, FOCUS), async ({ probe, auth, focus }) => void (await exchange(probe, { ...e, expect401: auth.bad && focus === "auth" }))),
        assertOptions(route, runsFor(op)),
      );
      if (sweepErrors.length > 0) throw new Error(`${sweepErrors.length} declared fields of ${route} failed with a wrong type:\n${sweepErrors.map((err) => err.message).join("\n")}`);
    }, 150_000);
  }

  it.concurrent("refuses every bad credential on every route with 401", async () => {
    const cases = fc.constantFrom(...OPERATIONS).chain((op) => probeFor(op, fc.constant<Focus>("auth"), 4).map((p) => ({ ...p, op })));
    await fc.assert(
      fc.asyncProperty(cases, async ({ probe, auth, op }) => void (await exchange(probe, expectation("credentials (every route)", op.path, auth.bad)))),
      assertOptions("credentials", RUNS * 4),
    );
  }, 150_000);

  it.concurrent("answers the same request sent four times at once without 5xx", async () => {
    // Races: one Idempotency-Key twice at once, one endpoint deleted twice, one key revoked twice.
    const cases = fc.constantFrom(...OPERATIONS).chain((op) => probeFor(op, FOCUS).map((p) => ({ ...p, op })));
    await fc.assert(
      fc.asyncProperty(cases, async ({ probe, op }) => {
        const e = expectation("bursts (every route)", op.path);
        await Promise.all(Array.from({ length: 4 }, () => exchange(probe, e)));
      }),
      assertOptions("bursts", RUNS),
    );
  }, 150_000);

  it.concurrent("answers methods and paths nobody declared with JSON 4xx", async () => {
    const methods = fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS");
    const declared = fc.constantFrom(...OPERATIONS).chain((op) => fc.tuple(...op.params.filter((p) => p.in === "path").map((p) => pathSegment(realIds(op, p.name).live))).map((s) => fill(op, s)));
    const path = fc.oneof(
      fc.tuple(declared, fc.constantFrom("/", "//", "/x", "/..", "/%2e%2e/x", "/%00", "%00", ".json", "/openai/v1/x")).map(([p, tail]) => p + tail),
      declared.map((p) => p.toUpperCase()),
      declared.map((p) => `/${p}`),
      fc
        .tuple(fc.constantFrom("", "/v2", "/api/v1", "/admin", "/v2/{ep}", "/v2/{ep}/openai", "/v2/{ep}/openai/v1", "/api/v1/endpoints/{ep}"), fc.array(pathSegment([]), { minLength: 1, maxLength: 4 }))
        .map(([prefix, segs]) => `${prefix.replace("{ep}", w.handlerEp)}/${segs.join("/")}`),
    );
    const cases = fc.record({ method: methods, path, admin: fc.boolean(), body: fc.option(fc.constantFrom('{"input":1}', "{", ""), { nil: undefined }) });
    await fc.assert(
      fc.asyncProperty(cases, async (c) => {
        const headers = { authorization: `Bearer ${c.admin ? ADMIN : w.key}`, "content-type": "application/json" };
        const body = c.body === undefined ? { kind: "no body" } : { kind: "text", bytes: Buffer.from(c.body) };
        await exchange(new Probe(c.method, c.path, headers, body, false), expectation("undeclared", lenientDecode(c.path)));
      }),
      assertOptions("undeclared", RUNS * 3),
    );
  }, 150_000);

  it("is still healthy afterwards, with no prototype polluted and no internal error logged", async () => {
    const summary = [...stats].map(([route, s]) => `  ${route.padEnd(52)} ${String(s.cases).padStart(4)} cases  ${[...s.statuses].sort(([a], [b]) => a - b).map(([st, n]) => `${st}×${n}`).join(" ")}${s.held ? `  held×${s.held}` : ""}`);
    const total = [...stats.values()].reduce((n, s) => n + s.cases, 0);
    console.log(`api-fuzz: ${total} cases, seed ${SEED}\n${summary.join("\n")}`);
    expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${api.url}/readyz`)).status).toBe(200);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).filter((k) => k === "polluted")).toEqual([]);
    const internal = serverErrors.filter((l) => l.line.includes('"level":"error"'));
    expect([...failures.values()], `${failures.size} failures (seed ${SEED})`).toEqual([]);
    expect(internal.map((l) => l.line), "internal errors logged by the API").toEqual([]);
    expect(controlErrors, "errors logged by the control plane projecting the fuzzed jobs").toEqual([]);
  });
});
