import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ajv } from "ajv";
import OpenAI from "openai";
import runpodSdk from "runpod-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { findEngineProcesses } from "./support/engine-processes.ts";
import { examplesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

interface EngineStats {
  generated_tokens_total: number;
  active_requests: number;
}

/**
 * LLM endpoints end to end: the real `openai` and `runpod-sdk` clients against the API, real
 * workers supervising the embedded node-llama-cpp engine with the project's tiny model.
 */
describe("OpenAI-compatible routes on an embedded-engine endpoint", () => {
  let stack: Stack;
  let key: string;
  let ep: string;
  let dir: string;
  let modelPath: string;
  let openai: OpenAI;

  const engine = () => {
    const found = findEngineProcesses(modelPath);
    if (found.length !== 1) throw new Error(`expected one engine process, found ${found.length}`);
    return found[0]!;
  };
  const engineStats = async (): Promise<EngineStats> => (await fetch(`${engine().url}/stats`)).json() as Promise<EngineStats>;

  beforeAll(async () => {
    stack = await startStack({ sseHeartbeatMs: 200 });
    dir = await mkdtemp(join(tmpdir(), "hearth-openai-"));
    // Engines run as HEARTH_ENGINE_USER (nobody), which must be able to reach the model: mkdtemp makes 0700.
    await chmod(dir, 0o755);
    // A path of this test's own, so the engine process can be told apart from any other.
    modelPath = ensureTinyLlamaFile(join(dir, "tiny-llama.gguf"));
    key = await stack.tenant("llm");
    ep = await stack.endpoint(key, {
      engine: { kind: "openai", profile: "embedded", model: `file://${modelPath}`, args: { threads: 1, "ctx-size": 1024 }, concurrency: 8 },
      workersMin: 1,
      workersMax: 1,
    });
    openai = new OpenAI({ baseURL: `${stack.api.url}/v2/${ep}/openai/v1`, apiKey: key, maxRetries: 0 });
    await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body.workers.idle === 1, 60_000);
  });
  afterAll(async () => {
    await stack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("lists the served model", async () => {
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["tiny-llama"]);
  });

  it("answers a chat completion and a completion with the engine's JSON and real usage", async () => {
    const chat = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "Say hi" }], max_tokens: 8, temperature: 0 });
    expect(chat.object).toBe("chat.completion");
    expect(chat.choices[0]!.message.role).toBe("assistant");
    expect(typeof chat.choices[0]!.message.content).toBe("string");
    expect(chat.usage!.prompt_tokens).toBeGreaterThan(0);
    expect(chat.usage!.completion_tokens).toBeGreaterThan(0);
    expect(chat.usage!.completion_tokens).toBeLessThanOrEqual(8);

    const a = await openai.completions.create({ model: "tiny-llama", prompt: "Once upon a time", max_tokens: 12, temperature: 0.9, seed: 7 });
    const b = await openai.completions.create({ model: "tiny-llama", prompt: "Once upon a time", max_tokens: 12, temperature: 0.9, seed: 7 });
    expect(a.object).toBe("text_completion");
    expect(a.choices[0]!.text.length).toBeGreaterThan(0);
    expect(b.choices[0]!.text).toBe(a.choices[0]!.text);
  });

  it("streams a chat completion token by token, the same text as without streaming, then records TTFT, ITL and token counts", async () => {
    const params = { model: "tiny-llama", messages: [{ role: "user" as const, content: "Tell me a story" }], max_tokens: 40, temperature: 0 };
    const whole = await openai.chat.completions.create(params);
    const stream = await openai.chat.completions.create({ ...params, stream: true });
    let text = "";
    let chunks = 0;
    let finish: string | null = null;
    let id = "";
    for await (const chunk of stream) {
      id = chunk.id;
      chunks++;
      text += chunk.choices[0]?.delta.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(chunks).toBeGreaterThan(5);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(id).toMatch(/^chatcmpl-/);

    const row = await waitFor(async () => {
      const rows = await stack.sql<{ ttft_ms: number | null; itl_ms: number | null; prompt_tokens: number | null; completion_tokens: number | null }[]>`
        select ttft_ms, itl_ms, prompt_tokens, completion_tokens from jobs
        where endpoint_id = ${ep} and status = 'COMPLETED' and itl_ms is not null order by finished_at desc limit 1`;
      return rows[0];
    });
    expect(row.ttft_ms).toBeGreaterThanOrEqual(0);
    expect(row.itl_ms).toBeGreaterThanOrEqual(0);
    expect(row.prompt_tokens).toBe(whole.usage!.prompt_tokens);
    expect(row.completion_tokens).toBe(whole.usage!.completion_tokens);
  });

  it("gives usage in a streamed response only when the caller asks for it", async () => {
    const withUsage = await openai.completions.create({ model: "tiny-llama", prompt: "A", max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
    const usages: unknown[] = [];
    for await (const c of withUsage) if (c.usage) usages.push(c.usage);
    expect(usages).toEqual([expect.objectContaining({ completion_tokens: 5 })]);

    const without = await openai.completions.create({ model: "tiny-llama", prompt: "A", max_tokens: 5, temperature: 0, stream: true });
    for await (const c of without) expect(c.usage ?? null).toBeNull();
  });

  it("answers bad requests, bad keys and unknown endpoints with OpenAI errors", async () => {
    const bad = await openai.chat.completions.create({ model: "tiny-llama", messages: [] }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ type: "invalid_request_error", param: "messages" });

    const stranger = new OpenAI({ baseURL: `${stack.api.url}/v2/${ep}/openai/v1`, apiKey: "not-a-key", maxRetries: 0 });
    expect(await stranger.models.list().catch((e: unknown) => e)).toBeInstanceOf(OpenAI.AuthenticationError);

    const nowhere = new OpenAI({ baseURL: `${stack.api.url}/v2/ep-missing/openai/v1`, apiKey: key, maxRetries: 0 });
    const missing = await nowhere.models.list().catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect((missing as InstanceType<typeof OpenAI.NotFoundError>).error).toMatchObject({ type: "not_found_error" });

    // The engine's own refusal (a prompt longer than its context) keeps the engine's status.
    const tooLong = await openai.completions.create({ model: "tiny-llama", prompt: "word ".repeat(3000), max_tokens: 4 }).catch((e: unknown) => e);
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it("passes structured output, tools and sampling fields to the engine unchanged: a strict json_schema and a required tool call validate", async () => {
    const ajv = new Ajv({ strict: true });
    const schema = { type: "object", properties: { city: { type: "string", maxLength: 12 }, days: { type: "integer", minimum: 1, maximum: 7 } }, required: ["city", "days"], additionalProperties: false };
    const validate = ajv.compile(schema);
    const structured = await openai.chat.completions.create({
      model: "tiny-llama",
      messages: [{ role: "user", content: "Plan a trip" }],
      response_format: { type: "json_schema", json_schema: { name: "trip", schema, strict: true } },
      temperature: 1,
      seed: 5,
      presence_penalty: 0.5,
      top_k: 20,
    } as never);
    expect(validate(JSON.parse((structured as OpenAI.ChatCompletion).choices[0]!.message.content!))).toBe(true);

    const tools = [{ type: "function" as const, function: { name: "book", parameters: schema } }];
    const first = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "Book it" }], tools, tool_choice: "required", temperature: 1, seed: 2 });
    const call = first.choices[0]!.message.tool_calls![0]! as { id: string; function: { name: string; arguments: string } };
    expect(first.choices[0]!.finish_reason).toBe("tool_calls");
    expect(call.function.name).toBe("book");
    expect(validate(JSON.parse(call.function.arguments))).toBe(true);
    // The second turn carries the call and its result back.
    const second = await openai.chat.completions.create({
      model: "tiny-llama",
      messages: [{ role: "user", content: "Book it" }, first.choices[0]!.message, { role: "tool", tool_call_id: call.id, content: "booked" }],
      tools,
      tool_choice: "none",
      max_completion_tokens: 4,
      temperature: 0,
    });
    expect(typeof second.choices[0]!.message.content).toBe("string");

    // The engine's refusal is relayed as it is, param included.
    const refused = await openai.chat.completions
      .create({ model: "tiny-llama", messages: [{ role: "user", content: "x" }], response_format: { type: "json_schema", json_schema: { name: "x", schema: { type: "string", pattern: "a" } } } })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.APIError);
    expect((refused as InstanceType<typeof OpenAI.APIError>).status).toBe(400);
    expect((refused as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ param: "response_format.json_schema.schema.pattern" });
  }, 60_000);

  it("takes vLLM's sampling fields in a RunPod job's sampling_params: top_k 1 at temperature 1 is greedy decoding", async () => {
    const runpod = runpodSdk(key, { baseUrl: `${stack.api.url}/v2` });
    const endpoint = runpod.endpoint(ep)!;
    const text = async (sampling_params: Record<string, unknown>) => {
      const done = (await endpoint.runSync({ input: { prompt: "Once upon a time", sampling_params: { max_tokens: 12, ...sampling_params } } })) as { status: string; output: any };
      expect(done.status).toBe("COMPLETED");
      return done.output[0].choices[0].tokens.join("") as string;
    };
    const greedy = await text({ temperature: 0 });
    expect(await text({ temperature: 1, seed: 3, top_k: 1 })).toBe(greedy);
    expect(await text({ temperature: 1, seed: 3, min_p: 1, frequency_penalty: 0 })).toBe(greedy);
    // Penalties need repeats to act on: a longer greedy text has some.
    expect(await text({ temperature: 0, max_tokens: 64, repetition_penalty: 3, presence_penalty: 1 })).not.toBe(await text({ temperature: 0, max_tokens: 64 }));
  }, 60_000);

  it("serves runpod-sdk runSync and stream on the same endpoint (worker-vllm input)", async () => {
    const runpod = runpodSdk(key, { baseUrl: `${stack.api.url}/v2` });
    const endpoint = runpod.endpoint(ep)!;
    const done = (await endpoint.runSync({ input: { prompt: "Hello", sampling_params: { max_tokens: 6, temperature: 0 } } })) as { status: string; output: any };
    expect(done.status).toBe("COMPLETED");
    expect(done.output).toEqual([{ choices: [{ tokens: [expect.any(String)] }], usage: { input: expect.any(Number), output: 6 } }]);

    const started = await endpoint.run({ input: { messages: [{ role: "user", content: "Hi" }], sampling_params: { max_tokens: 10, temperature: 0 }, stream: true } });
    const outputs: any[] = [];
    for await (const part of endpoint.stream(started.id)) outputs.push(part.output);
    const last = outputs.at(-1);
    expect(last).toEqual({ choices: [{ tokens: [] }], usage: { input: expect.any(Number), output: 10 } });
    expect(outputs.slice(0, -1).every((o) => o.choices[0].tokens.length === 1)).toBe(true);
    expect(outputs.length).toBeGreaterThan(2);
  });

  it("runs eight streams at once on one worker, their tokens interleaved in time", async () => {
    const arrivals = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const s = await openai.completions.create({ model: "tiny-llama", prompt: `Stream ${i}`, max_tokens: 120, temperature: 0, stream: true });
        const times: number[] = [];
        for await (const c of s) if (c.choices[0]?.text) times.push(performance.now());
        return times;
      }),
    );
    for (const t of arrivals) expect(t.length).toBeGreaterThan(10);
    // Every stream had produced a token before any stream produced its last one: all eight made progress together.
    const latestFirst = Math.max(...arrivals.map((t) => t[0]!));
    const earliestLast = Math.min(...arrivals.map((t) => t.at(-1)!));
    expect(latestFirst).toBeLessThan(earliestLast);
  });

  it("stops the engine's generation when the client disconnects mid-stream", async () => {
    const before = await engineStats();
    const controller = new AbortController();
    const s = await openai.completions.create({ model: "tiny-llama", prompt: "Go on and on", max_tokens: 900, temperature: 0.8, stream: true }, { signal: controller.signal });
    let got = 0;
    for await (const c of s) {
      if (c.choices[0]?.text && ++got === 5) {
        controller.abort(); // the client's connection closes here, mid-stream
        break;
      }
    }
    expect(got).toBe(5);
    // The engine's own counter settles: the generation stopped rather than ran to 900 tokens.
    const settled = await waitFor(async () => {
      const a = await engineStats();
      await new Promise((r) => setTimeout(r, 300));
      const b = await engineStats();
      return a.generated_tokens_total === b.generated_tokens_total && b.active_requests === 0 ? b : undefined;
    });
    expect(settled.generated_tokens_total - before.generated_tokens_total).toBeLessThan(600);
    const cancelled = await waitFor(async () => {
      const rows = await stack.sql<{ status: string }[]>`select status from jobs where endpoint_id = ${ep} and status = 'CANCELLED'`;
      return rows.length > 0;
    });
    expect(cancelled).toBe(true);
  });

  it("fails the job in flight with a clear error when the engine dies, restarts it, and serves the next request", async () => {
    const victim = engine();
    const running = openai.completions.create({ model: "tiny-llama", prompt: "Long", max_tokens: 900, temperature: 0.8 }).catch((e: unknown) => e);
    await waitFor(async () => (await engineStats()).active_requests > 0);
    process.kill(victim.pid, "SIGKILL");
    const failed = await running;
    expect(failed).toBeInstanceOf(OpenAI.InternalServerError);
    expect((failed as Error).message).toMatch(/engine failed during the request/);
    // While its engine restarts, the worker says so in the endpoint's health (and takes no jobs).
    await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body.workers.unhealthy === 1, 15_000);

    const next = await waitFor(
      () => openai.completions.create({ model: "tiny-llama", prompt: "Again", max_tokens: 4, temperature: 0 }).catch(() => undefined),
      60_000,
      200,
    );
    expect(next.choices[0]!.text.length).toBeGreaterThan(0);
    expect(engine().pid).not.toBe(victim.pid);
  });

  it("keeps a stream that waits on a cold start alive with SSE comments, then relays it", async () => {
    // A second model path, so this endpoint's engine is never mistaken for the first one's.
    const coldModel = ensureTinyLlamaFile(join(dir, "cold", "tiny-llama.gguf"));
    const cold = await stack.endpoint(key, { engine: { kind: "openai", profile: "embedded", model: `file://${coldModel}`, args: { threads: 1, "ctx-size": 1024 } }, workersMin: 0 });
    const res = await fetch(`${stack.api.url}/v2/${cold}/openai/v1/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ prompt: "Hi", max_tokens: 5, temperature: 0, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const body = await res.text();
    const firstData = body.indexOf("data: {");
    expect(body.slice(0, firstData)).toMatch(/^(: keep-alive\n\n)+$/);
    expect(body.endsWith("data: [DONE]\n\n")).toBe(true);
    const events = body.split("\n\n").filter((e) => e.startsWith("data: {")).map((e) => JSON.parse(e.slice(6)) as { choices: { text: string }[] });
    expect(events.filter((e) => e.choices[0]?.text).length).toBeGreaterThan(0);
  });

  it("refuses an engine spec with a flag its profile does not have, naming it", async () => {
    const r = await stack.call("POST", "/api/v1/endpoints", {
      key,
      body: { name: "bad", engine: { kind: "openai", profile: "vllm", model: "s3://models/llama/", args: { "tensor-parallel-size": 2, "no-such-flag": true } } },
    });
    expect(r.status).toBe(400);
    expect(r.body.issues).toEqual([expect.objectContaining({ path: "engine.args.no-such-flag" })]);
  });

  it("relays OpenAI requests to a handler endpoint as passthrough jobs, a non-streaming handler's value as the one event", async () => {
    const echo = await stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 1 });
    const base = `${stack.api.url}/v2/${echo}/openai/v1`;
    const whole = await stack.call("POST", `/v2/${echo}/openai/v1/completions`, { key, body: { model: "m", prompt: "hi" } });
    expect(whole.status).toBe(200);
    expect(whole.body).toEqual({ echo: { openai_route: "/v1/completions", openai_input: { model: "m", prompt: "hi" } } });
    const res = await fetch(`${base}/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "m", prompt: "hi", stream: true }),
    });
    const events = (await res.text()).split("\n\n").filter((e) => e.startsWith("data: "));
    expect(events).toHaveLength(2);
    expect(JSON.parse(events[0]!.slice(6))).toEqual({ echo: { openai_route: "/v1/completions", openai_input: { model: "m", prompt: "hi", stream: true } } });
    expect(events[1]).toBe("data: [DONE]");
  });
});
