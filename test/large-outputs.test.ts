import { createHash } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examplesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

/** Outputs over 256 KB leave Postgres for the object store, and stay readable after Redis forgets them. */
describe("large outputs", () => {
  let stack: Stack;
  let key: string;
  let otherKey: string;
  let ep: string;

  beforeAll(async () => {
    stack = await startStack({ retention: { asyncMs: 1000, syncMs: 1000 } });
    [key, otherKey] = await Promise.all([stack.tenant("big"), stack.tenant("other")]);
    ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 1, workersMax: 1 });
  }, 60_000);
  afterAll(async () => stack?.close());

  it("keeps a 600 KB output in the object store: the record points at it, the API serves its exact bytes to its tenant only", async () => {
    // NUL, a lone surrogate and multi-byte characters: what JSON keeps, byte for byte.
    const big = `\u0000\ud800é${"x".repeat(600 * 1024)}`;
    const run = await stack.call("POST", `/v2/${ep}/run`, { key, body: { input: { big } } });
    expect(run.status).toBe(200);
    const record = await waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/jobs/${run.body.id}`, { key });
      return r.status === 200 && r.body.status === "COMPLETED" ? r.body : undefined;
    }, 30_000, 50);
    expect(record.output).toBeUndefined();
    expect(record.outputRef).toMatchObject({ store: "local", url: `${stack.api.url}/api/v1/jobs/${run.body.id}/output` });
    // Past the result's retention /status is 404: the object store is all that is left of the output.
    await waitFor(async () => ((await stack.call("GET", `/v2/${ep}/status/${run.body.id}`, { key })).status === 404 ? true : undefined), 10_000, 100);
    const res = await fetch(record.outputRef.url, { headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const bytes = Buffer.from(await res.arrayBuffer());
    expect(bytes.length).toBe(record.outputRef.bytes);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe(record.outputRef.sha256);
    expect(JSON.parse(bytes.toString("utf8"))).toEqual({ echo: { big } });
    expect((await fetch(record.outputRef.url, { headers: { authorization: `Bearer ${otherKey}` } })).status).toBe(404);
    expect((await fetch(record.outputRef.url)).status).toBe(401);
  }, 60_000);

  it("keeps a small output inline, with no stored copy", async () => {
    const sync = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: "small" } });
    const record = await waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/jobs/${sync.body.id}`, { key });
      return r.status === 200 && r.body.status === "COMPLETED" ? r.body : undefined;
    }, 30_000, 50);
    expect(record).toMatchObject({ output: { echo: "small" }, outputRef: null });
    expect((await stack.call("GET", `/api/v1/jobs/${sync.body.id}/output`, { key })).status).toBe(404);
  }, 60_000);
});
