import { afterEach, describe, expect, it } from "vitest";
import { RUNPOD_MAX_RESULT_BYTES } from "../../../core/engine/runpod-protocol.ts";
import { JobBook, type JobSink } from "./job-book.ts";
import { startWorkerGateway, type WorkerGateway } from "./worker-gateway.ts";

const TOKEN = "worker-token-1";

/** A sink that records what the gateway delivered. */
function recorder() {
  const seen: Array<{ kind: string; value: unknown }> = [];
  const sink: JobSink = {
    progress: (output) => void seen.push({ kind: "progress", value: output }),
    chunk: async (output) => void seen.push({ kind: "chunk", value: output }),
    done: (meaning) => void seen.push({ kind: meaning.kind, value: meaning }),
  };
  return { seen, sink };
}

describe("the RunPod worker gateway", () => {
  let gateway: WorkerGateway | undefined;
  let book: JobBook;
  const stopPods: number[] = [];
  const tracebacks: string[] = [];
  afterEach(async () => {
    await gateway?.close();
    gateway = undefined;
  });

  async function start(holdMs = 300, concurrency = 3) {
    book = new JobBook();
    gateway = await startWorkerGateway({
      endpointId: "ep1",
      workerId: "w1",
      token: TOKEN,
      book,
      concurrency,
      holdMs,
      onStopPod: () => void stopPods.push(Date.now()),
      onTraceback: (_id, tb) => void tracebacks.push(tb),
    });
    return gateway.origin;
  }
  // As the SDK sends them (§3.6): the raw token, and JSON bodies labelled form-urlencoded.
  const get = (url: string, auth = TOKEN) => fetch(url, { headers: { Authorization: auth, "Content-Type": "application/json" } });
  const post = (url: string, body: string, auth = TOKEN) =>
    fetch(url, { method: "POST", body, headers: { Authorization: auth, "Content-Type": "application/x-www-form-urlencoded", charset: "utf-8" } });

  it("holds an empty take, then answers 204; a job added while held is handed over at once", async () => {
    const origin = await start(300);
    const empty = await get(`${origin}/v2/ep1/job-take/w1?gpu=cpu&job_in_progress=0`);
    expect(empty.status).toBe(204);
    const held = get(`${origin}/v2/ep1/job-take/w1?gpu=cpu&job_in_progress=0`);
    await new Promise((r) => setTimeout(r, 50));
    book.add({ id: "j1", input: { a: 1 } }, recorder().sink);
    const taken = await held;
    expect(taken.status).toBe(200);
    expect(await taken.json()).toEqual({ id: "j1", input: { a: 1 } });
  });

  it("hands a batch as an array, refuses a batch over the worker's concurrency", async () => {
    const origin = await start(300, 3);
    for (const id of ["a", "b", "c", "d"]) book.add({ id, input: id }, recorder().sink);
    const batch = await get(`${origin}/v2/ep1/job-take-batch/w1?gpu=cpu&batch_size=3&job_in_progress=0`);
    expect(((await batch.json()) as any[]).map((j: { id: string }) => j.id)).toEqual(["a", "b", "c"]);
    const over = await get(`${origin}/v2/ep1/job-take-batch/w1?gpu=cpu&batch_size=4&job_in_progress=1`);
    expect(over.status).toBe(400);
    expect(((await over.json()) as { error: string }).error).toMatch(/concurrency/);
    expect(book.heldIds).toEqual(["a", "b", "c"]);
  });

  it("takes done bodies as JSON whatever their content type: output, progress, error, stopPod", async () => {
    const origin = await start();
    const jobs = { ok: recorder(), bad: recorder(), raised: recorder() };
    for (const [id, r] of Object.entries(jobs)) book.add({ id, input: null }, r.sink);
    await get(`${origin}/v2/ep1/job-take-batch/w1?batch_size=3&job_in_progress=0`);

    expect((await post(`${origin}/v2/ep1/job-done/w1/ok?gpu=cpu&isStream=false`, JSON.stringify({ status: "IN_PROGRESS", output: { pct: 50 } }))).status).toBe(200);
    expect((await post(`${origin}/v2/ep1/job-done/w1/ok?gpu=cpu&isStream=false`, JSON.stringify({ output: { x: 1 }, stopPod: true }))).status).toBe(200);
    expect(jobs.ok.seen).toEqual([
      { kind: "progress", value: { pct: 50 } },
      { kind: "completed", value: { kind: "completed", output: { x: 1 }, stopPod: true } },
    ]);
    expect(stopPods).toHaveLength(1);

    await post(`${origin}/v2/ep1/job-done/w1/bad?isStream=false`, JSON.stringify({ output: { partial: 1 }, error: "no good" }));
    expect(jobs.bad.seen[0]!.value).toMatchObject({ kind: "failed", error: "no good", output: { partial: 1 } });

    const sdkError = JSON.stringify({ error_type: "<class 'ValueError'>", error_message: "boom", error_traceback: "Traceback ...\nValueError: boom", hostname: "h", worker_id: "w1", runpod_version: "1.12.0" });
    await post(`${origin}/v2/ep1/job-done/w1/raised?isStream=false`, JSON.stringify({ error: sdkError }));
    expect(jobs.raised.seen[0]!.value).toMatchObject({ kind: "failed", error: "ValueError: boom" });
    expect(tracebacks.at(-1)).toContain("Traceback");

    // Done is done: a second job-done for it changes nothing.
    const again = await post(`${origin}/v2/ep1/job-done/w1/ok?isStream=false`, JSON.stringify({ output: 2 }));
    expect(again.status).toBe(409);
    expect(jobs.ok.seen).toHaveLength(2);
  });

  it("delivers stream posts in order for a held job only", async () => {
    const origin = await start();
    const r = recorder();
    book.add({ id: "g", input: null }, r.sink);
    expect((await post(`${origin}/v2/ep1/job-stream/w1/g?isStream=false`, JSON.stringify({ output: 1 }))).status).toBe(409); // not taken yet
    await get(`${origin}/v2/ep1/job-take/w1?job_in_progress=0`);
    for (const n of [1, 2, 3]) await post(`${origin}/v2/ep1/job-stream/w1/g?isStream=false`, JSON.stringify({ output: n }));
    expect(r.seen.map((s) => s.value)).toEqual([1, 2, 3]);
  });

  it("names a withdrawn held job on the stop channel, and refuses its later done", async () => {
    const origin = await start(2000);
    const r = recorder();
    book.add({ id: "s", input: null }, r.sink);
    await get(`${origin}/v2/ep1/job-take/w1?job_in_progress=0`);
    const poll = get(`${origin}/v2/ep1/job-stop/w1?gpu=cpu`);
    await new Promise((res) => setTimeout(res, 50));
    expect(book.withdraw("s")).toBe(true);
    const stop = await poll;
    expect(await stop.json()).toEqual({ jobsToStop: ["s"] });
    expect((await post(`${origin}/v2/ep1/job-done/w1/s?isStream=false`, JSON.stringify({ output: 1 }))).status).toBe(409);
    expect(r.seen).toEqual([]);
  });

  it("refuses what the caller got wrong with a JSON error and changes nothing", async () => {
    const origin = await start();
    const r = recorder();
    book.add({ id: "j", input: null }, r.sink);
    await get(`${origin}/v2/ep1/job-take/w1?job_in_progress=0`);
    const cases: Array<[Promise<Response>, number]> = [
      [get(`${origin}/v2/ep1/ping/w1`, "wrong-token"), 401],
      [get(`${origin}/v2/ep1/ping/w1`, `Bearer ${TOKEN}x`), 401],
      [get(`${origin}/v2/ep2/ping/w1`), 403],
      [get(`${origin}/v2/ep1/ping/w2`), 403],
      [get(`${origin}/v2/ep1/nothing/w1`), 404],
      [get(`${origin}/v2/ep1/job-done/w1/j`), 405],
      [post(`${origin}/v2/ep1/job-done/w1/j?isStream=false`, "not json"), 400],
      [post(`${origin}/v2/ep1/job-done/w1/j?isStream=false`, "[1,2]"), 400],
      [post(`${origin}/v2/ep1/job-done/w1/j?isStream=false`, "[".repeat(5000) + "]".repeat(5000)), 400],
      [post(`${origin}/v2/ep1/job-done/w1/unknown?isStream=false`, "{}"), 409],
      [get(`${origin}/v2/ep1/job-take-batch/w1?batch_size=0`), 400],
      [post(`${origin}/v2/ep1/job-done/w1/j?isStream=false`, JSON.stringify({ output: "x".repeat(RUNPOD_MAX_RESULT_BYTES) })), 400],
    ];
    for (const [response, status] of cases) {
      const res = await response;
      expect(res.status).toBe(status);
      expect(typeof ((await res.json()) as { error?: unknown }).error).toBe("string");
    }
    expect(r.seen).toEqual([]);
    // The job is still held, and a good done still lands.
    expect((await post(`${origin}/v2/ep1/job-done/w1/j?isStream=false`, JSON.stringify({ output: "\u0000\ud800" }))).status).toBe(200);
    expect(r.seen[0]!.value).toMatchObject({ kind: "completed", output: "\u0000\ud800" });
  });

  it("puts back the jobs of a take whose connection closed before the answer", async () => {
    const origin = await start(2000);
    const gone = new AbortController();
    const held = get(`${origin}/v2/ep1/job-take/w1?job_in_progress=0`).catch(() => "aborted");
    const taking = fetch(`${origin}/v2/ep1/job-take/w1?job_in_progress=0`, { headers: { Authorization: TOKEN }, signal: gone.signal }).catch(() => "aborted");
    await new Promise((r) => setTimeout(r, 50));
    gone.abort();
    expect(await taking).toBe("aborted");
    await new Promise((r) => setTimeout(r, 50));
    book.add({ id: "k", input: 1 }, recorder().sink);
    const res = (await held) as Response;
    expect(await res.json()).toEqual({ id: "k", input: 1 });
  });
});
