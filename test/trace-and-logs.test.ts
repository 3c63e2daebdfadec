import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { pidOfWorker } from "./support/engine-processes.ts";

/**
 * Issue 13's logs and traces through the whole stack: a client's `traceparent` reaches the job's
 * record and the worker's lines about the job; the logs routes show a worker's lines and a job's,
 * to their tenant only, including a SIGKILLed worker's last words.
 */
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";
const handler = { kind: "handler", module: join(fixturesDir, "console-logs.mjs") };

interface Line {
  at: number;
  stream: string;
  line: string;
}
const parsed = (items: Line[]) => items.flatMap((i) => (i.line.startsWith("{") ? [JSON.parse(i.line) as Record<string, unknown>] : []));

describe("trace context and worker logs", () => {
  let stack: Stack;
  let key: string;
  let other: string;
  let ep: string;

  beforeAll(async () => {
    stack = await startStack();
    key = await stack.tenant("logs");
    other = await stack.tenant("someone-else");
    ep = await stack.endpoint(key, { engine: handler });
  });
  afterAll(async () => {
    await stack?.close();
  });

  const record = (id: string) => waitFor(async () => {
    const r = await stack.call("GET", `/api/v1/jobs/${id}`, { key });
    return r.status === 200 && r.body.status === "COMPLETED" ? (r.body as Record<string, unknown>) : undefined;
  });

  it("carries the client's traceparent to the job's record and to every line the worker logged about the job", async () => {
    const run = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { n: 1 } }, headers: { traceparent: `00-${TRACE_ID}-${CLIENT_SPAN}-01` } });
    expect(run.status).toBe(200);
    expect(run.body.status).toBe("COMPLETED");
    const id = run.body.id as string;
    expect(await record(id)).toMatchObject({ traceId: TRACE_ID });

    const logs = await waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/jobs/${id}/logs`, { key });
      return r.status === 200 && parsed(r.body.items).some((l) => l.msg === "job finished") ? (r.body.items as Line[]) : undefined;
    });
    const lines = parsed(logs);
    // The runtime's line and the handler's console output, each with the job's ids.
    expect(lines.find((l) => l.msg === "job finished")).toMatchObject({ level: "info", component: "worker", jobId: id, traceId: TRACE_ID, endpointId: ep, status: "COMPLETED" });
    expect(lines.find((l) => l.source === "console" && l.level === "info")).toMatchObject({ msg: "handling { n: 1 }", jobId: id, traceId: TRACE_ID });
    expect(lines.find((l) => l.source === "console" && l.level === "error")).toMatchObject({ msg: "a warning from the handler", jobId: id });
    for (const l of lines) expect(l).toMatchObject({ jobId: id, traceId: TRACE_ID });
  });

  it("starts a new trace when the client sends none or a malformed one, and never refuses the job for it", async () => {
    for (const headers of [{} as Record<string, string>, { traceparent: "00-00000000000000000000000000000000-00f067aa0ba902b7-01" }, { traceparent: "garbage\u00ff" }]) {
      const run = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { n: 2 } }, headers });
      expect(run.status).toBe(200);
      const rec = await record(run.body.id as string);
      expect(rec.traceId).toMatch(/^[0-9a-f]{32}$/);
      expect(rec.traceId).not.toBe("00000000000000000000000000000000");
    }
  });

  it("echoes a sane X-Request-Id and replaces one that is not", async () => {
    const kept = await stack.call("GET", `/v2/${ep}/health`, { key, headers: { "x-request-id": "req-123_abc" } });
    expect(kept.headers.get("x-request-id")).toBe("req-123_abc");
    const replaced = await stack.call("GET", `/v2/${ep}/health`, { key, headers: { "x-request-id": `${"x".repeat(300)}` } });
    expect(replaced.headers.get("x-request-id")).toMatch(/^[0-9a-f]{16}$/);
  });

  it("shows a worker's last lines, plain text included, with tail", async () => {
    const run = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { n: 3 } } });
    const workerId = (await record(run.body.id as string)).workerId as string;
    const all = await waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/endpoints/${ep}/workers/${workerId}/logs?tail=1000`, { key });
      return r.status === 200 && (r.body.items as Line[]).some((l) => l.line === `raw write for ${run.body.id as string}`) ? (r.body.items as Line[]) : undefined;
    });
    expect(parsed(all).some((l) => l.phase === "ready" && l.workerId === workerId)).toBe(true);
    for (const l of all) expect(l).toMatchObject({ at: expect.any(Number), stream: expect.stringMatching(/^std(out|err)$/) });
    const tail = await stack.call("GET", `/api/v1/endpoints/${ep}/workers/${workerId}/logs?tail=2`, { key });
    expect(tail.body.items).toHaveLength(2);
    // The newest two: nothing in the full read is newer than the tail's last.
    expect((tail.body.items as Line[])[1]!.at).toBeGreaterThanOrEqual(all.at(-1)!.at);
  });

  it("refuses what is not the caller's, and bad tails, with 4xx", async () => {
    const run = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { n: 4 } } });
    const id = run.body.id as string;
    const rec = await record(id);
    const workerId = rec.workerId as string;
    expect((await stack.call("GET", `/api/v1/jobs/${id}/logs`, { key: other })).status).toBe(404);
    expect((await stack.call("GET", `/api/v1/endpoints/${ep}/workers/${workerId}/logs`, { key: other })).status).toBe(404);
    expect((await stack.call("GET", `/api/v1/endpoints/${ep}/workers/w-nosuchworker/logs`, { key })).status).toBe(404);
    for (const tail of ["0", "1001", "abc", "-1", "1.5"]) {
      const r = await stack.call("GET", `/api/v1/jobs/${id}/logs?tail=${tail}`, { key });
      expect(r.status, tail).toBe(400);
      expect(JSON.stringify(r.body.issues)).toContain("tail");
    }
    expect((await stack.call("GET", `/api/v1/jobs/${id}/logs`)).status).toBe(401);
  });

  it("keeps what a SIGKILLed worker printed before it died", async () => {
    const run = await stack.call("POST", `/v2/${ep}/run`, { key, body: { input: { hang: true } } });
    const id = run.body.id as string;
    const started = await waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/jobs/${id}/logs`, { key });
      const line = r.status === 200 ? parsed(r.body.items).find((l) => l.source === "console") : undefined;
      return line;
    });
    const workerId = started.workerId as string;
    process.kill(pidOfWorker(workerId), "SIGKILL");
    // The job's lines were read from the pipe as they were written: the kill loses none of them.
    const after = await stack.call("GET", `/api/v1/jobs/${id}/logs`, { key });
    expect(parsed(after.body.items).find((l) => l.source === "console")).toMatchObject({ msg: "handling { hang: true }", jobId: id });
    const worker = await stack.call("GET", `/api/v1/endpoints/${ep}/workers/${workerId}/logs`, { key });
    expect((worker.body.items as Line[]).some((l) => l.line === `raw write for ${id}`)).toBe(true);
  });
});
