import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { examplesDir, fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

/** The job path end to end: API → BullMQ → scheduler-started worker processes → results, on real Redis and Postgres. */
describe("job path with real workers", () => {
  let stack: Stack;
  let key: string;
  let tmp: string;
  const handler = (name: string) => ({ kind: "handler", module: join(fixturesDir, name) });

  beforeAll(async () => {
    // A short BullMQ lock so a SIGKILLed worker's job is re-run within seconds.
    stack = await startStack({ workerLockMs: 2000 });
    key = await stack.tenant("jobs");
    tmp = await mkdtemp(join(tmpdir(), "hearth-jobs-"));
  });
  afterAll(async () => {
    await stack?.close();
  });

  const health = async (ep: string) => (await stack.call("GET", `/v2/${ep}/health`, { key })).body;
  const status = async (ep: string, id: string) => (await stack.call("GET", `/v2/${ep}/status/${id}`, { key })).body;
  const run = async (ep: string, body: unknown) => {
    const r = await stack.call("POST", `/v2/${ep}/run`, { key, body });
    expect(r.status).toBe(200);
    return r.body.id as string;
  };
  const until = (ep: string, id: string, s: string) => waitFor(async () => ((await status(ep, id)).status === s ? status(ep, id) : undefined), 30_000);

  it("scales 0 → N → 0 with real worker processes", async () => {
    const ep = await stack.endpoint(key, { engine: handler("sleep.mjs"), scalerType: "REQUEST_COUNT", scalerValue: 1, workersMax: 3, idleTimeout: 1 });
    expect((await health(ep)).workers).toMatchObject({ idle: 0, running: 0, initializing: 0 });
    const ids = await Promise.all([0, 1, 2].map(() => run(ep, { input: { ms: 2500 } })));
    await waitFor(async () => (await health(ep)).workers.running === 3, 30_000);
    const done = await Promise.all(ids.map((id) => until(ep, id, "COMPLETED")));
    expect(new Set(done.map((d) => d.workerId)).size).toBe(3); // one job per worker: three workers really ran
    await waitFor(async () => {
      const w = (await health(ep)).workers;
      return w.idle + w.running + w.initializing + w.unhealthy === 0;
    }, 30_000);
    // Heartbeats go before the processes exit; wait for the exits to be recorded too.
    await waitFor(async () => {
      const rows = await stack.sql`select count(*)::int as n from worker_sessions where endpoint_id = ${ep} and exit_code is not null`;
      return rows[0]?.n === 3;
    });
    expect(stack.provider.list().filter((w) => w.endpointId === ep)).toEqual([]);
  });

  it("times a job out after its executionTimeout", async () => {
    const ep = await stack.endpoint(key, { engine: handler("sleep.mjs"), workersMin: 1 });
    const marker = join(tmp, "timeout-abort");
    const id = await run(ep, { input: { ms: 60_000, abortMarker: marker }, policy: { executionTimeout: 5000 } });
    const view = await until(ep, id, "TIMED_OUT");
    expect(view.error).toMatch(/timeout/i);
    expect(view.executionTime).toBeGreaterThanOrEqual(5000);
    expect(readFileSync(marker, "utf8")).toMatch(/timeout/i); // the handler was told, not just abandoned
    // Counters follow the result by a moment (the worker counts after BullMQ stores it).
    await waitFor(async () => (await health(ep)).jobs.failed === 1);
  });

  it("retries a FAILED job under the same id", async () => {
    const ep = await stack.endpoint(key, { engine: handler("fail-once.mjs"), workersMin: 1 });
    const id = await run(ep, { input: { marker: join(tmp, "fail-once") } });
    const failed = await until(ep, id, "FAILED");
    expect(failed.error).toMatch(/first attempt fails/);
    const retried = await stack.call("POST", `/v2/${ep}/retry/${id}`, { key });
    expect(retried.body).toMatchObject({ id, status: "IN_QUEUE", retries: 1 });
    const done = await until(ep, id, "COMPLETED");
    expect(done).toMatchObject({ id, retries: 1, output: { ok: true, attempt: 2 } });
    expect(done.error).toBeUndefined();
    await waitFor(async () => (await health(ep)).jobs.completed === 1);
    expect((await health(ep)).jobs).toMatchObject({ completed: 1, failed: 1, retried: 1 });
    const again = await stack.call("POST", `/v2/${ep}/retry/${id}`, { key });
    expect(again.status).toBe(400); // COMPLETED jobs are not retried
  });

  it("re-runs the job of a SIGKILLed worker on another worker, and completes it once", async () => {
    const ep = await stack.endpoint(key, { engine: handler("count-runs.mjs"), workersMin: 2, workersMax: 2 });
    await waitFor(async () => (await health(ep)).workers.idle === 2, 30_000);
    const logFile = join(tmp, "runs.log");
    const id = await run(ep, { input: { logFile, ms: 1500 } });
    const firstLine = await waitFor(() => {
      try {
        return readFileSync(logFile, "utf8").split("\n").filter(Boolean)[0];
      } catch {
        return undefined;
      }
    });
    const firstPid = Number(firstLine.split(" ")[2]);
    process.kill(firstPid, "SIGKILL");
    const done = await until(ep, id, "COMPLETED");
    expect(done.output).toEqual({ ok: true });
    const lines = readFileSync(logFile, "utf8").split("\n").filter(Boolean);
    expect(lines).toHaveLength(2);
    expect(Number(lines[1]!.split(" ")[2])).not.toBe(firstPid);
    await waitFor(async () => (await health(ep)).jobs.completed === 1);
    expect(readFileSync(logFile, "utf8").split("\n").filter(Boolean)).toHaveLength(2); // and no third run since
    expect((await health(ep)).jobs.completed).toBe(1);
  });

  it("answers runsync with an output too large for the finish message, read from the job", async () => {
    const ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 1 });
    const big = "x".repeat(200 * 1024);
    const r = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { big } } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: "COMPLETED", output: { echo: { big } } });
  });

  it("writes a durable record of every job to Postgres", async () => {
    const ep = await stack.endpoint(key, { engine: handler("sleep.mjs"), workersMin: 1 });
    const id = await run(ep, { input: { ms: 10 }, webhook: "http://127.0.0.1:9/hook" });
    await until(ep, id, "COMPLETED");
    const row = await waitFor(async () => {
      const [r] = await stack.sql`select * from jobs where id = ${id}`;
      return r?.status === "COMPLETED" ? r : undefined;
    });
    expect(row).toMatchObject({ endpoint_id: ep, status: "COMPLETED", webhook: "http://127.0.0.1:9/hook", output_json: JSON.stringify({ slept: 10 }) });
    expect(row.worker_id).toMatch(/^w-/);
    expect(row.execution_time_ms).toEqual(expect.any(Number));
    expect(Date.parse(row.submitted_at)).toBeGreaterThan(0);
  });
});
