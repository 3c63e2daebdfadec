import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { parseLogEntry, parseStreamId, type WorkerPayload } from "../core/log/log-entry.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { readLog } from "./support/event-log-probe.ts";
import { examplesDir, STACK_ADMIN_TOKEN, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

/** How long the model server takes to send the model: the download the worker must report. */
const THROTTLE_MS = 2500;
const SLICES = 25;

const chargeRow = z.object({ seconds: z.number() });

/** The worker transitions of one session, oldest first: ms of each on Redis' clock and its payload. */
async function transitions(stack: Stack, endpointId: string, workerId: string): Promise<{ ms: number; p: WorkerPayload }[]> {
  const entries = await readLog(stack.redis, new RedisKeys(stack.redisPrefix).log(endpointId));
  return entries.flatMap((e) => {
    const p = parseLogEntry(e.id, [...e.fields].flat());
    return p.kind === "worker" && p.p.workerId === workerId ? [{ ms: parseStreamId(p.id).ms, p: p.p }] : [];
  });
}

/**
 * The weights fetch is not billed: a worker whose model is downloaded over HTTP (slowly, from a
 * server of this test on an allow-listed loopback address) reports the download's length on its
 * first transition out of `initializing`, and the ledger charges the session that much less.
 * The embedded engine (node-llama-cpp with the project's tiny GGUF) is the one engine kind that
 * takes a downloaded model and really serves it here; a handler fetches no model.
 */
describe("billing: the weights-fetch phase is reported by the worker and not billed", () => {
  let stack: Stack;
  let root: string;
  let server: http.Server;
  let modelUrl: string;
  let downloads = 0;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "hearth-weights-fetch-"));
    // The engine runs as HEARTH_ENGINE_USER and must reach the cache; mkdtemp makes 0700.
    await chmod(root, 0o755);
    const model = await readFile(ensureTinyLlamaFile(join(root, "files", "tiny-llama.gguf")));
    const slice = Math.ceil(model.length / SLICES);
    server = http.createServer((req, res) => {
      if (req.url !== "/tiny-llama.gguf") return void res.writeHead(404).end();
      downloads++;
      res.writeHead(200, { "content-length": model.length });
      let sent = 0;
      // SLICES writes THROTTLE_MS / SLICES apart: the last byte leaves no sooner than THROTTLE_MS after the first.
      const next = () => {
        if (res.destroyed) return;
        const chunk = model.subarray(sent, sent + slice);
        sent += chunk.length;
        if (sent >= model.length) return void res.end(chunk);
        res.write(chunk);
        setTimeout(next, THROTTLE_MS / (SLICES - 1));
      };
      next();
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    modelUrl = `http://127.0.0.1:${(server.address() as { port: number }).port}/tiny-llama.gguf`;

    stack = await startStack({
      // Plain http:// to a loopback address: only because the operator allow-lists it.
      modelAllowList: "127.0.0.1",
      // A download cache of this test alone: a cache hit from another run would hide the download.
      workerInheritEnv: { ...process.env, HEARTH_MODEL_CACHE_DIR: join(root, "cache") },
    });
  }, 60_000);

  afterAll(async () => {
    await stack?.close();
    await new Promise((r) => server?.close(r));
    await rm(root, { recursive: true, force: true });
  });

  it("reports the download on the first transition out of initializing, and bills the session that much less", async () => {
    const key = await stack.tenant("weights");
    const endpointId = await stack.endpoint(key, {
      engine: { kind: "openai", profile: "embedded", model: modelUrl, args: { threads: 1, "ctx-size": 512 }, concurrency: 1 },
      workersMin: 0,
      workersMax: 1,
      idleTimeout: 1,
    });
    // A cold start: the job waits for the worker, which downloads the model before its engine loads.
    const res = await fetch(`${stack.api.url}/v2/${endpointId}/openai/v1/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Hi", max_tokens: 2, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    expect(downloads).toBe(1);

    // Idle for idleTimeout, stopped by the scheduler, settled by the billing consumer.
    const workerId = await waitFor(
      async () => {
        const rows = await stack.sql`select worker_id from ledger_entries where endpoint_id = ${endpointId} and key like '%:settle'`;
        return rows[0]?.worker_id as string | undefined;
      },
      60_000,
      200,
    );
    const log = await transitions(stack, endpointId, workerId);
    const requested = log.find((t) => t.p.state === "requested");
    const exited = log.find((t) => t.p.state === "exited" && t.p.by === "scheduler");
    const booted = log.findIndex((t) => t.p.state === "initializing");
    const outOfBoot = log.slice(booted + 1).find((t) => t.p.state !== "initializing");
    expect(requested && exited && booted >= 0 && outOfBoot).toBeTruthy();
    // idle, or running when the waiting job arrived within the heartbeat's coalescing window.
    expect(["idle", "running"]).toContain(outOfBoot!.p.state);
    const weightsFetchMs = outOfBoot!.p.weightsFetchMs!;
    expect(weightsFetchMs).toBeGreaterThanOrEqual(THROTTLE_MS);
    // Reported once: no other entry of the session carries it.
    expect(log.filter((t) => t.p.weightsFetchMs !== undefined)).toHaveLength(1);

    // The meter's rule: the report, capped at the boot span (requested → first idle/running), comes off the session.
    const bootMs = outOfBoot!.ms - requested!.ms;
    expect(weightsFetchMs).toBeLessThan(bootMs);
    const observedMs = exited!.ms - requested!.ms;
    const expectedSeconds = Math.ceil((observedMs - Math.min(weightsFetchMs, bootMs)) / 1000);
    const charges = z.array(chargeRow).parse(await stack.sql`select seconds from ledger_entries where worker_id = ${workerId} and kind = 'charge'`);
    const billedSeconds = charges.reduce((s, c) => s + c.seconds, 0);
    expect(billedSeconds).toBe(expectedSeconds);

    // The operator's reconciliation explains the gap (over a second, as the fetch is over two).
    const from = new Date(requested!.ms - 60_000).toISOString();
    const report = await stack.call("GET", `/admin/billing/reconcile?from=${encodeURIComponent(from)}`, { key: STACK_ADMIN_TOKEN });
    expect(report.status).toBe(200);
    const session = report.body.sessions.find((s: { workerId: string }) => s.workerId === workerId);
    expect(session).toMatchObject({ billedSeconds, observedSeconds: Math.ceil(observedMs / 1000), meter: { weightsFetchMs, endedBy: "exited" } });
    expect(session.observedSeconds - billedSeconds).toBeGreaterThan(1);
    expect(report.body.differences).toContainEqual(expect.objectContaining({ workerId, explanation: "weights_fetch", differenceSeconds: billedSeconds - session.observedSeconds }));
  }, 120_000);

  it("a handler worker fetches no model and reports nothing", async () => {
    const key = await stack.tenant("handler");
    const endpointId = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMax: 1, idleTimeout: 1 });
    const r = await stack.call("POST", `/v2/${endpointId}/runsync`, { key, body: { input: { hello: 1 } } });
    expect(r.body.status).toBe("COMPLETED");
    const workerId = await waitFor(async () => {
      const rows = await stack.sql`select worker_id from ledger_entries where endpoint_id = ${endpointId} and key like '%:settle'`;
      return rows[0]?.worker_id as string | undefined;
    }, 60_000, 200);
    const log = await transitions(stack, endpointId, workerId);
    expect(log.some((t) => t.p.state === "idle" || t.p.state === "running")).toBe(true);
    expect(log.filter((t) => t.p.weightsFetchMs !== undefined)).toEqual([]);
  }, 90_000);
});
