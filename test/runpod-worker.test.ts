import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import runpodSdk from "runpod-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { pidOfWorker } from "./support/engine-processes.ts";
import { isProcessAlive } from "../core/fs/real-paths.ts";

/**
 * RunPod's own Python workers, unchanged, behind Hearth: `runpod` engines run a worker folder's
 * command, which speaks RunPod's worker protocol to its Hearth worker's gateway, and are driven
 * here with RunPod's JavaScript client. The `runpod` package cannot be installed from the
 * registries these machines reach, so the folder carries a stand-in that sends what
 * runpod-python 1.12.0 sends (test/fixtures/handlers/runpod-worker/runpod/).
 */
const PYTHON = "/usr/bin/python3";
const workerDir = join(fixturesDir, "runpod-worker");
const skip = existsSync(PYTHON) ? false : `no ${PYTHON} on this machine`;

describe.skipIf(skip)("RunPod Python workers, unmodified, through Hearth", () => {
  let stack: Stack;
  let key: string;
  let runpod: ReturnType<typeof runpodSdk>;
  let tmp: string;
  let echoEp: string;
  let streamEp: string;

  /** A `runpod` engine for one of the folder's workers; the SDK's start-up checks dial 8.8.8.8, which this network refuses. */
  const engine = (file: string, extra: { env?: Record<string, string>; concurrency?: number } = {}) => ({
    kind: "runpod",
    command: [PYTHON, "-u", file],
    cwd: workerDir,
    env: { RUNPOD_SKIP_AUTO_SYSTEM_CHECKS: "true", ...extra.env },
    ...(extra.concurrency !== undefined && { concurrency: extra.concurrency }),
  });
  const status = async (ep: string, id: string) => (await stack.call("GET", `/v2/${ep}/status/${id}`, { key })).body as Record<string, any>;
  const until = (ep: string, id: string, want: string) =>
    waitFor(async () => {
      const s = await status(ep, id);
      return s.status === want ? s : undefined;
    }, 60_000);
  const runs = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : []);

  beforeAll(async () => {
    // A short BullMQ lock: the job of a killed worker runs again within seconds.
    stack = await startStack({ workerLockMs: 2000 });
    key = await stack.tenant("runpod-py");
    tmp = await mkdtemp(join(tmpdir(), "hearth-runpod-py-"));
    // The worker runs as `nobody`: it writes its run logs here.
    await chmod(tmp, 0o777);
    runpod = runpodSdk(key, { baseUrl: `${stack.api.url}/v2` });
    echoEp = await stack.endpoint(key, { engine: engine("handler.py"), workersMin: 1, workersMax: 1 });
    streamEp = await stack.endpoint(key, { engine: engine("stream_handler.py"), workersMin: 1, workersMax: 1 });
    for (const ep of [echoEp, streamEp]) await waitFor(async () => (await runpod.endpoint(ep)!.health()).workers.idle === 1, 60_000);
  }, 120_000);
  afterAll(async () => {
    await stack?.close();
  });

  it("run + status, and runSync, with the worker's own output", async () => {
    const ep = runpod.endpoint(echoEp)!;
    const { id } = await ep.run({ input: { prompt: "hello" } });
    const done = await until(echoEp, id, "COMPLETED");
    expect(done.output).toEqual({ echo: { prompt: "hello" } });
    expect(done.workerId).toMatch(/^w-/);
    const sync = await ep.runSync({ input: { n: 1, text: "né \u2603" } });
    expect(sync).toMatchObject({ status: "COMPLETED", output: { echo: { n: 1, text: "né \u2603" } } });
  });

  it("streams a generator worker's yields in order, exactly once, and keeps the aggregate as output", async () => {
    const ep = runpod.endpoint(streamEp)!;
    const { id } = await ep.run({ input: { n: 12, delay: 0.02 } });
    const chunks: unknown[] = [];
    for await (const chunk of ep.stream(id)) chunks.push(chunk);
    const expected = Array.from({ length: 12 }, (_, i) => ({ token: i }));
    expect(chunks).toEqual(expected.map((output) => ({ output })));
    const done = await until(streamEp, id, "COMPLETED");
    expect(done.output).toEqual(expected);
  });

  it("shows progress updates in /status while the job runs, then the result", async () => {
    const { id } = await runpod.endpoint(echoEp)!.run({ input: { progress: [{ step: 1 }, { step: 2 }, { step: 3 }], sleep: 1 } });
    const seen = await waitFor(async () => {
      const s = await status(echoEp, id);
      return s.status === "IN_PROGRESS" && s.output !== undefined ? s.output : undefined;
    }, 30_000);
    expect([{ step: 1 }, { step: 2 }, { step: 3 }]).toContainEqual(seen);
    const done = await until(echoEp, id, "COMPLETED");
    expect(done.output).toEqual({ echo: { progress: [{ step: 1 }, { step: 2 }, { step: 3 }], sleep: 1 } });
  });

  it("fails a job whose handler raised (error unpacked) or returned an error, and keeps serving", async () => {
    const ep = runpod.endpoint(echoEp)!;
    const raised = await ep.runSync({ input: { raise: "the model is on fire" } });
    expect(raised).toMatchObject({ status: "FAILED", error: "ValueError: the model is on fire" });
    const returned = await ep.runSync({ input: { errorDict: "bad prompt" } });
    expect(returned).toMatchObject({ status: "FAILED", error: "bad prompt", output: { partial: 1 } });
    // The worker's log has the traceback, tagged with the job.
    const logs = await stack.call("GET", `/api/v1/jobs/${raised.id}/logs`, { key });
    expect(JSON.stringify(logs.body)).toContain("Traceback");
    expect(await ep.runSync({ input: { after: true } })).toMatchObject({ status: "COMPLETED" });
  });

  it("cancel reaches the worker through job-stop: the job is CANCELLED and the worker is free at once", async () => {
    const ep = runpod.endpoint(echoEp)!;
    const { id } = await ep.run({ input: { sleep: 120 } });
    await until(echoEp, id, "IN_PROGRESS");
    expect(await ep.cancel(id)).toMatchObject({ id, status: "CANCELLED" });
    // One job at a time on this worker: this one runs only because the sleeping one was stopped.
    expect(await ep.runSync({ input: { next: 1 } }, 30_000)).toMatchObject({ status: "COMPLETED", output: { echo: { next: 1 } } });
    expect((await status(echoEp, id)).status).toBe("CANCELLED");
  });

  it("ends a job past its execution timeout as TIMED_OUT through job-stop, without waiting for a job-done", async () => {
    const r = await stack.call("POST", `/v2/${echoEp}/run`, { key, body: { input: { sleep: 120 }, policy: { executionTimeout: 5000 } } });
    const id = (r.body as { id: string }).id;
    const done = await until(echoEp, id, "TIMED_OUT");
    expect(done.error).toMatch(/execution timeout/);
    expect(await runpod.endpoint(echoEp)!.runSync({ input: { after: "timeout" } }, 30_000)).toMatchObject({ status: "COMPLETED" });
  });

  it("runs a batch of 3 jobs at once on one worker (batch takes)", async () => {
    const ep = await stack.endpoint(key, { engine: engine("handler.py", { concurrency: 3, env: { WORKER_CONCURRENCY: "3" } }), workersMin: 1, workersMax: 1 });
    await waitFor(async () => (await runpod.endpoint(ep)!.health()).workers.idle === 1, 60_000);
    const log = join(tmp, "batch.log");
    const ids = await Promise.all([1, 2, 3].map(async (n) => (await runpod.endpoint(ep)!.run({ input: { n, sleep: 3, runsLog: log } })).id));
    // All three running together, on the one worker.
    await waitFor(async () => (await Promise.all(ids.map((id) => status(ep, id)))).every((s) => s.status === "IN_PROGRESS"), 30_000);
    const done = await Promise.all(ids.map((id) => until(ep, id, "COMPLETED")));
    expect(new Set(done.map((d) => d.workerId)).size).toBe(1);
    expect(new Set(runs(log).map((l) => l.split(" ")[1])).size).toBe(1); // one Python process ran them all
  });

  it("a job that returns refresh_worker (stopPod) stops its worker; the next job runs on a new one", async () => {
    const ep = await stack.endpoint(key, { engine: engine("handler.py"), workersMin: 1, workersMax: 1 });
    await waitFor(async () => (await runpod.endpoint(ep)!.health()).workers.idle === 1, 60_000);
    // The SDK's types omit fields it passes through (workerId); read the objects as they arrive.
    const first = (await runpod.endpoint(ep)!.runSync({ input: { refresh: true } })) as Record<string, any>;
    expect(first).toMatchObject({ status: "COMPLETED", output: { echo: { refresh: true } } });
    const second = (await runpod.endpoint(ep)!.runSync({ input: { again: 1 } }, 60_000)) as Record<string, any>;
    expect(second.status).toBe("COMPLETED");
    expect(second.workerId).not.toBe(first.workerId);
    await waitFor(async () => {
      const s = (await stack.call("GET", `/api/v1/endpoints/${ep}/workers`, { key })).body as { items: Array<{ id: string; endReason: string | null }> };
      return s.items.find((w) => w.id === first.workerId)?.endReason?.includes("stopPod");
    });
  });

  it("runs the job of a SIGKILLed worker again, once, on a new worker", async () => {
    const log = join(tmp, "killed.log");
    const { id } = await runpod.endpoint(echoEp)!.run({ input: { sleep: 4, runsLog: log } });
    const first = await waitFor(() => runs(log)[0]);
    const pid = Number(first.split(" ")[1]);
    process.kill(pid, "SIGKILL");
    const done = await until(echoEp, id, "COMPLETED");
    expect(done.output).toEqual({ echo: { sleep: 4, runsLog: log } });
    const lines = runs(log);
    expect(lines).toHaveLength(2);
    expect(lines[1]!.split(" ")[1]).not.toBe(String(pid));
  });

  it("a SIGKILLed Hearth worker takes its Python worker with it, and the job runs again once", async () => {
    const log = join(tmp, "killed-hearth.log");
    const { id } = await runpod.endpoint(echoEp)!.run({ input: { sleep: 4, runsLog: log } });
    const first = await waitFor(() => runs(log)[0]);
    const pythonPid = Number(first.split(" ")[1]);
    const running = await until(echoEp, id, "IN_PROGRESS");
    process.kill(pidOfWorker(running.workerId as string), "SIGKILL");
    // The provider kills the dead worker's process group: no Python worker is left behind to hold anything.
    await waitFor(() => !isProcessAlive(pythonPid), 15_000);
    const done = await until(echoEp, id, "COMPLETED");
    expect(done.workerId).not.toBe(running.workerId);
    expect(runs(log)).toHaveLength(2);
  });

  it("a worker that fails at import is restarted with backoff, and its session says why", async () => {
    const ep = await stack.endpoint(key, { engine: engine("crash_on_import.py"), workersMin: 1, workersMax: 1 });
    const reason = await waitFor(async () => {
      const s = (await stack.call("GET", `/api/v1/endpoints/${ep}/workers`, { key })).body as { items: Array<{ endReason: string | null }> };
      return s.items.find((w) => w.endReason?.includes("no_such_module_xyz"))?.endReason;
    }, 60_000);
    expect(reason).toMatch(/ModuleNotFoundError/);
    // Started again (with the scheduler's backoff), failing the same way each time; never ready.
    await waitFor(async () => {
      const s = (await stack.call("GET", `/api/v1/endpoints/${ep}/workers`, { key })).body as { items: Array<{ endReason: string | null; readyAt: string | null }> };
      return s.items.filter((w) => w.endReason?.includes("no_such_module_xyz")).length >= 2 && s.items.every((w) => w.readyAt === null);
    }, 60_000);
    expect((await runpod.endpoint(ep)!.health()).workers.idle).toBe(0);
  });

  it("refuses an engine that sets an injected variable or lies outside HEARTH_HANDLER_DIRS, naming the field", async () => {
    const injected = await stack.call("POST", "/api/v1/endpoints", { key, body: { name: "x", engine: { ...engine("handler.py"), env: { RUNPOD_AI_API_KEY: "mine" } } } });
    expect(injected.status).toBe(400);
    expect(JSON.stringify(injected.body)).toContain("engine.env.RUNPOD_AI_API_KEY");
    const outside = await stack.call("POST", "/api/v1/endpoints", { key, body: { name: "x", engine: { ...engine("handler.py"), cwd: tmpdir() } } });
    expect(outside.status).toBe(400);
    expect(JSON.stringify(outside.body)).toContain("engine.cwd");
    const nul = await stack.call("POST", "/api/v1/endpoints", { key, body: { name: "x", engine: { ...engine("handler.py"), command: ["python3\u0000"] } } });
    expect(nul.status).toBe(400);
  });

  it("runs the worker as the unprivileged engine user, with none of Hearth's variables", async () => {
    const pids = execFileSync("pgrep", ["-f", "stream_handler.py"], { encoding: "utf8" }).trim().split("\n");
    const environ = readFileSync(`/proc/${pids[0]}/environ`, "utf8").split("\0");
    expect(environ.some((v) => v.startsWith("REDIS_URL=") || v.startsWith("HEARTH_") || v.startsWith("DATABASE_URL="))).toBe(false);
    expect(environ).toContain("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true");
    const uid = readFileSync(`/proc/${pids[0]}/status`, "utf8").match(/^Uid:\s+(\d+)/m)?.[1];
    if (process.getuid?.() === 0) expect(uid).not.toBe("0");
    // Its token opens its own gateway only: the API does not know it.
    const token = environ.find((v) => v.startsWith("RUNPOD_AI_API_KEY="))!.slice("RUNPOD_AI_API_KEY=".length);
    expect(token.length).toBeGreaterThanOrEqual(40);
    expect((await stack.call("GET", `/v2/${streamEp}/health`, { key: token })).status).toBe(401);
    // And a tenant key does not open the gateway.
    const takeUrl = environ.find((v) => v.startsWith("RUNPOD_WEBHOOK_GET_JOB="))!.slice("RUNPOD_WEBHOOK_GET_JOB=".length);
    const workerId = environ.find((v) => v.startsWith("RUNPOD_POD_ID="))!.slice("RUNPOD_POD_ID=".length);
    const refused = await fetch(takeUrl.replace("$ID", workerId), { headers: { Authorization: key } });
    expect(refused.status).toBe(401);
  });
});
