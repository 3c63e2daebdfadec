import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WORKERS_CONNECTION_NAME } from "../apps/api/workers/request-scope.ts";
import { apiClient } from "./support/api-client.ts";
import { fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { freePort, waitFor } from "./support/services.ts";
import { startWranglerDev, wranglerDevUnavailable, type WranglerDev } from "./support/wrangler-dev.ts";

const unavailable = wranglerDevUnavailable();
if (unavailable) console.warn(`SKIPPED test/workerd.test.ts: ${unavailable}`);

/**
 * The API app itself under `wrangler dev --local` (workerd, nodejs_compat), against the test's
 * Redis, Postgres, scheduler and a real worker process: the job path and a streamed chat completion
 * go through workerd; management is forwarded to the Node API as HEARTH_ORIGIN.
 */
describe.skipIf(unavailable !== undefined)("the API on Workers (wrangler dev, local workerd)", () => {
  let stack: Stack;
  let dev: WranglerDev;
  let key: string;
  let ep: string;
  let call: ReturnType<typeof apiClient>;

  beforeAll(async () => {
    stack = await startStack();
    key = await stack.tenant("workerd");
    ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(fixturesDir, "workerd-mix.mjs") }, workersMin: 1, workersMax: 1 });
    dev = await startWranglerDev({
      DATABASE_URL: stack.databaseUrl,
      REDIS_URL: stack.redisUrl,
      HEARTH_REDIS_PREFIX: stack.redisPrefix,
      HEARTH_BILLING_MODE: "meter",
      HEARTH_ORIGIN: stack.api.url,
      HEARTH_LOG_LEVEL: "warn",
    });
    call = apiClient(dev.url);
    await waitFor(async () => (await call("GET", `/v2/${ep}/health`, { key })).body?.workers?.idle === 1, 60_000);
  }, 240_000);
  afterAll(async () => {
    await dev?.close();
    await stack?.close();
  });

  const status = async (id: string) => (await call("GET", `/v2/${ep}/status/${id}`, { key })).body as { status: string; output?: unknown };

  it("runs /run → /status, /runsync and /status-sync through workerd, with the app's own validation", async () => {
    const run = await call("POST", `/v2/${ep}/run`, { key, body: { input: { echo: "async" } } });
    expect(run.status).toBe(200);
    const done = await waitFor(async () => ((await status(run.body.id)).status === "COMPLETED" ? status(run.body.id) : undefined), 30_000);
    expect(done.output).toEqual({ echo: "async" });

    const sync = await call("POST", `/v2/${ep}/runsync`, { key, body: { input: { echo: "sync", delayMs: 300 } } });
    expect(sync.status).toBe(200);
    expect(sync.body).toMatchObject({ status: "COMPLETED", output: { echo: "sync" } });

    const later = await call("POST", `/v2/${ep}/run`, { key, body: { input: { echo: "waited", delayMs: 300 } } });
    const waited = await call("GET", `/v2/${ep}/status-sync/${later.body.id}?wait=20000`, { key });
    expect(waited.body).toMatchObject({ status: "COMPLETED", output: { echo: "waited" } });

    // Bad input is the app's 400 with the zod path; no key is its 401: the same app, not a proxy's guess.
    const bad = await call("POST", `/v2/${ep}/run`, { key, body: { input: "x", webhook: "not a url\u0000" } });
    expect(bad.status).toBe(400);
    expect(bad.body.issues?.[0]?.path).toBeDefined();
    expect((await call("POST", `/v2/${ep}/run`, { raw: "{}" })).status).toBe(401);
  });

  it("refuses hostile input through workerd as the Node API does: 4xx with the zod path, never 5xx", async () => {
    const deep = await call("POST", `/v2/${ep}/run`, { key, raw: `{"input":${"[".repeat(5000)}${"]".repeat(5000)}}` });
    expect(deep.status).toBe(400);
    expect(deep.body.issues[0].path).toBe("input");
    const nul = await call("GET", `/v2/${ep}/status/a%00b`, { key });
    expect(nul.status).toBe((await stack.call("GET", `/v2/${ep}/status/a%00b`, { key })).status);
    expect(nul.status).toBeLessThan(500);
    const big = await call("POST", `/v2/${ep}/run`, { key, raw: JSON.stringify({ input: "x".repeat(11 * 1024 * 1024) }) });
    expect(big.status).toBe(413);
    expect((await call("POST", `/v2/${ep}/run`, { key, raw: "{not json" })).status).toBe(400);
  });

  it("drains /stream while the job runs, and /cancel stops a running job", async () => {
    const run = await call("POST", `/v2/${ep}/run`, { key, body: { input: { count: 4, delayMs: 150 } } });
    const got: unknown[] = [];
    await waitFor(async () => {
      const page = await call("GET", `/v2/${ep}/stream/${run.body.id}`, { key });
      expect(page.status).toBe(200);
      for (const c of page.body.stream) got.push(c.output);
      return page.body.status === "COMPLETED";
    }, 30_000, 10);
    expect(got).toEqual([0, 1, 2, 3].map((i) => ({ i })));

    const long = await call("POST", `/v2/${ep}/run`, { key, body: { input: { delayMs: 60_000 } } });
    await waitFor(async () => (await status(long.body.id)).status === "IN_PROGRESS", 30_000);
    const cancel = await call("POST", `/v2/${ep}/cancel/${long.body.id}`, { key });
    expect(cancel.status).toBe(200);
    await waitFor(async () => (await status(long.body.id)).status === "CANCELLED", 30_000);
  });

  it("streams a chat completion to the real openai client", async () => {
    const openai = new OpenAI({ baseURL: `${dev.url}/v2/${ep}/openai/v1`, apiKey: key, maxRetries: 0 });
    let text = "";
    let finish: string | null = null;
    for await (const chunk of await openai.chat.completions.create({ model: "mix", messages: [{ role: "user", content: "hi" }], stream: true })) {
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe("012");
    expect(finish).toBe("stop");
  });

  it("forwards management to HEARTH_ORIGIN, keeps /admin off the edge and says what does not run here", async () => {
    const mine = await call("GET", `/api/v1/endpoints/${ep}`, { key });
    expect(mine.status).toBe(200);
    expect(mine.body.id).toBe(ep);
    expect((await call("GET", "/admin/tenants", { key })).status).toBe(404);
    const doc = await call("GET", "/openapi.json");
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths)).toContain("/v2/{ep}/runsync");
    const docs = await fetch(`${dev.url}/docs`);
    expect(docs.status).toBe(200); // forwarded: the page is read from the origin's node_modules
    expect(await docs.text()).toContain("<html");
    const metrics = await call("GET", "/metrics");
    expect(metrics.status).toBe(501);
    expect(metrics.body.code).toBe("not_on_workers");
    expect((await call("GET", "/readyz")).body).toEqual({ ready: true, redis: true, postgres: true });
  });

  /** The Worker's connections now open (named WORKERS_CONNECTION_NAME), to this stack's database and to Redis. */
  const workersConnections = async () => {
    const redis = ((await stack.redis.client("LIST")) as string).split("\n").filter((l) => l.includes(`name=${WORKERS_CONNECTION_NAME} `)).length;
    const [pg] = await stack.sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where application_name = ${WORKERS_CONNECTION_NAME} and datname = current_database()`;
    return { redis, postgres: pg!.n };
  };

  it("closes each request's Redis and Postgres connections once its response is sent", async () => {
    const open = workersConnections;
    const waiting = Promise.all([1, 2, 3].map(() => call("POST", `/v2/${ep}/runsync`, { key, body: { input: { echo: "n", delayMs: 1500 } } })));
    // While they wait, each holds its own connections: two to Redis (commands, pub/sub) and one to Postgres.
    await waitFor(async () => {
      const o = await open();
      return o.redis === 6 && o.postgres === 3;
    }, 10_000, 20);
    expect((await waiting).map((r) => r.body.status)).toEqual(["COMPLETED", "COMPLETED", "COMPLETED"]);
    await waitFor(async () => {
      const o = await open();
      return o.redis === 0 && o.postgres === 0;
    }, 10_000);
  });

  it("answers 503 with Retry-After while Redis is unreachable, and /readyz says which store", async () => {
    const down = await startWranglerDev({
      DATABASE_URL: stack.databaseUrl,
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`, // nothing listens there
      HEARTH_REDIS_PREFIX: stack.redisPrefix,
      HEARTH_BILLING_MODE: "meter",
      HEARTH_LOG_LEVEL: "silent",
    });
    try {
      const outage = apiClient(down.url);
      const run = await outage("POST", `/v2/${ep}/run`, { key, body: { input: { echo: "lost" } } });
      expect(run.status).toBe(503);
      expect(run.headers.get("retry-after")).toBe("1");
      expect(run.body.code).toBe("unavailable");
      expect((await outage("GET", "/readyz")).body).toEqual({ ready: false, redis: false, postgres: true });
      expect((await outage("GET", "/healthz")).status).toBe(200);
    } finally {
      await down.close();
    }
  }, 180_000);

  it("never reached for Cloudflare: no Request.cf fetch, no login", () => {
    expect(dev.output()).not.toMatch(/Unable to fetch the `Request.cf`|workers\.cloudflare\.com|wrangler login/);
  });
});
