import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadApiConfig } from "../core/config/process-configs.ts";
import { examplesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

/** Results stay readable through /status for their retention, then 404; the durable record stays. */
describe("result retention", () => {
  let stack: Stack;
  let key: string;
  let ep: string;

  beforeAll(async () => {
    stack = await startStack({ retention: { asyncMs: 1500, syncMs: 1000 } });
    key = await stack.tenant("retention");
    ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 1, workersMax: 1 });
  }, 60_000);
  afterAll(async () => stack?.close());

  const statusOf = (id: string) => stack.call("GET", `/v2/${ep}/status/${id}`, { key });

  it("a /run result is readable for HEARTH_RETENTION_ASYNC_S, then /status is 404 and the record remains", async () => {
    const run = await stack.call("POST", `/v2/${ep}/run`, { key, body: { input: { keep: "me" } } });
    const done = await waitFor(async () => {
      const s = await statusOf(run.body.id);
      return s.body.status === "COMPLETED" ? Date.now() : undefined;
    }, 30_000, 20);
    const gone = await waitFor(async () => ((await statusOf(run.body.id)).status === 404 ? Date.now() : undefined), 10_000, 50);
    expect(gone - done).toBeGreaterThanOrEqual(1000);
    const record = await waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/jobs/${run.body.id}`, { key });
      return r.status === 200 && r.body.status === "COMPLETED" ? r.body : undefined;
    }, 10_000, 50);
    expect(record.output).toEqual({ echo: { keep: "me" } });
  }, 60_000);

  it("a /runsync result for HEARTH_RETENTION_SYNC_S (or its wait, up to 5 min)", async () => {
    const sync = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: 1 } });
    expect(sync.body.status).toBe("COMPLETED");
    expect((await statusOf(sync.body.id)).status).toBe(200);
    await waitFor(async () => ((await statusOf(sync.body.id)).status === 404 ? true : undefined), 10_000, 50);
    expect((await stack.call("GET", `/api/v1/jobs/${sync.body.id}`, { key })).body.status).toBe("COMPLETED");
  }, 60_000);

  it("reads the variables, refusing nonsense naming them", () => {
    expect(loadApiConfig({}).retention).toEqual({ asyncMs: 1_800_000, syncMs: 60_000 });
    expect(loadApiConfig({ HEARTH_RETENTION_ASYNC_S: "10", HEARTH_RETENTION_SYNC_S: "5" }).retention).toEqual({ asyncMs: 10_000, syncMs: 5000 });
    expect(() => loadApiConfig({ HEARTH_RETENTION_ASYNC_S: "0" })).toThrow(/HEARTH_RETENTION_ASYNC_S/);
  });
});
