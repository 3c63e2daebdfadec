import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtEntryPath } from "../core/build/built-entry.ts";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { freePort, waitFor } from "./support/services.ts";

/*
 * The embedded engine as the worker runs it: main.ts in its own process, spoken to over HTTP with
 * plain fetch and with the real `openai` client. One server for the whole file (loading the model
 * costs seconds): --parallel 2 so that a third request has to queue, --threads 1
 * because the test runner needs the machine's other core.
 */

const REPO = fileURLToPath(new URL("..", import.meta.url));
// The build the worker runs (made by the test run's global setup), not the sources through tsx.
const MAIN = builtEntryPath("worker/engines/embedded/main.ts");
const CTX = 1024;

let dir: string;
let server: ChildProcess;
let base: string;
let listening: Record<string, unknown>;
let openai: OpenAI;

function startEngine(args: string[]): { child: ChildProcess; stdout: string[]; stderr: string[]; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [MAIN, ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => stdout.push(l));
  createInterface({ input: child.stderr! }).on("line", (l) => stderr.push(l));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, stdout, stderr, exited };
}

const post = (path: string, body: unknown, init: RequestInit = {}) =>
  fetch(`${base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), ...init });

async function stats(): Promise<{ generated_tokens_total: number; active_requests: number; queued_requests: number }> {
  return (await fetch(`${base}/stats`)).json() as never;
}

/** A response body under test, read without a schema: the assertions are its schema. */
type Body = any;

/** The JSON body of a response. */
async function body(res: Response | Promise<Response>): Promise<Body> {
  return (await res).json();
}

interface SseEvent {
  data: string;
  json: Body;
  at: number;
}

/** Reads a server-sent-event stream; `stopAfter` cancels the read (the client disconnects) after that many events. */
async function readEvents(res: Response, stopAfter = Infinity): Promise<SseEvent[]> {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const events: SseEvent[] = [];
  let buffered = "";
  while (events.length < stopAfter) {
    const { done, value } = await reader.read();
    if (done) break;
    buffered += value;
    let end: number;
    // Frames that arrive together in one read are taken only up to `stopAfter`.
    while (events.length < stopAfter && (end = buffered.indexOf("\n\n")) >= 0) {
      const frame = buffered.slice(0, end);
      buffered = buffered.slice(end + 2);
      expect(frame.startsWith("data: ")).toBe(true);
      const data = frame.slice("data: ".length);
      events.push({ data, json: data === "[DONE]" ? null : JSON.parse(data), at: performance.now() });
    }
  }
  if (events.length >= stopAfter) await reader.cancel();
  return events;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "hearth-embedded-"));
  const model = ensureTinyLlamaFile(join(dir, "tiny-llama.gguf"));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const engine = startEngine(["--model", model, "--host", "127.0.0.1", "--port", String(port), "--parallel", "2", "--ctx-size", String(CTX), "--threads", "1"]);
  server = engine.child;
  listening = await waitFor(() => {
    if (server.exitCode !== null) throw new Error(`engine exited ${server.exitCode}: ${engine.stderr.join("\n")}`);
    const line = engine.stdout.find((l) => l.includes('"listening"'));
    return line ? (JSON.parse(line) as Record<string, unknown>) : undefined;
  }, 30_000);
  openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  if (server && server.exitCode === null && server.signalCode === null) server.kill("SIGKILL");
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("embedded engine (node-llama-cpp behind the OpenAI HTTP API)", () => {
  it("listens once the model is loaded, logs it as one JSON line, and lists its model", async () => {
    expect(listening).toMatchObject({ msg: "listening", url: base, model: "tiny-llama", parallel: 2, ctx_size: CTX, threads: 1, chat_format: "General" });
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });

    const models = (await (await fetch(`${base}/v1/models`)).json()) as { object: string; data: { created: number }[] };
    expect(models).toEqual({ object: "list", data: [{ id: "tiny-llama", object: "model", created: expect.any(Number), owned_by: "hearth" }] });
    expect(Math.abs(models.data[0]!.created - Date.now() / 1000)).toBeLessThan(120);
    const listed = await openai.models.list();
    expect(listed.data.map((m) => m.id)).toEqual(["tiny-llama"]);
    expect((await openai.models.retrieve("tiny-llama")).id).toBe("tiny-llama");
  });

  it("answers /v1/completions in OpenAI's shape with the tokenizer's real counts, echoing its own model name", async () => {
    const res = await post("/v1/completions", { model: "some-other-name", prompt: "Hello world", max_tokens: 8, temperature: 0, user: "ignored", logit_bias: {} });
    expect(res.status).toBe(200);
    const completion = await body(res);
    expect(completion).toEqual({
      id: expect.stringMatching(/^cmpl-/),
      object: "text_completion",
      created: expect.any(Number),
      model: "tiny-llama",
      choices: [{ index: 0, text: expect.any(String), finish_reason: "length", logprobs: null }],
      // <s> ▁Hello ▁world: LLaMA's SentencePiece tokens, as llama.cpp's own server counts them.
      usage: { prompt_tokens: 3, completion_tokens: 8, total_tokens: 11 },
    });
    expect(Math.abs(completion.created - Date.now() / 1000)).toBeLessThan(60);
    expect(completion.choices[0].text.length).toBeGreaterThan(0);

    // The same prompt as an array of one string, and through the openai client: greedy, so the same text.
    const viaArray = await body(post("/v1/completions", { prompt: ["Hello world"], max_tokens: 8, temperature: 0 }));
    expect(viaArray.choices[0].text).toBe(completion.choices[0].text);
    const viaClient = await openai.completions.create({ model: "tiny-llama", prompt: "Hello world", max_tokens: 8, temperature: 0 });
    expect(viaClient.choices[0]!.text).toBe(completion.choices[0].text);
    expect(viaClient.usage).toEqual(completion.usage);
  });

  it("answers /v1/chat/completions through the openai client; text parts read as the same message", async () => {
    const history = [
      { role: "system" as const, content: "You are terse." },
      { role: "user" as const, content: "Hello\nthere" },
      { role: "assistant" as const, content: "Hi." },
      { role: "user" as const, content: "Tell me more" },
    ];
    const chat = await openai.chat.completions.create({ model: "tiny-llama", messages: history, max_completion_tokens: 6, temperature: 0 });
    expect(chat.id).toMatch(/^chatcmpl-/);
    expect(chat.object).toBe("chat.completion");
    expect(chat.model).toBe("tiny-llama");
    expect(chat.choices).toEqual([{ index: 0, message: { role: "assistant", content: expect.any(String) }, finish_reason: "length", logprobs: null }]);
    expect(chat.usage).toMatchObject({ completion_tokens: 6 });
    expect(chat.usage!.prompt_tokens).toBeGreaterThan(10);
    expect(chat.usage!.total_tokens).toBe(chat.usage!.prompt_tokens + 6);

    const parts = await openai.chat.completions.create({
      model: "tiny-llama",
      messages: [
        history[0]!,
        { role: "user", content: [{ type: "text", text: "Hello" }, { type: "text", text: "there" }] },
        history[2]!,
        history[3]!,
      ],
      max_tokens: 6,
      temperature: 0,
    });
    expect(parts.choices[0]!.message.content).toBe(chat.choices[0]!.message.content);
    expect(parts.usage).toEqual(chat.usage);
  });

  it("streams a chat completion: role first, one event per piece, finish, usage, [DONE]", async () => {
    const request = { messages: [{ role: "user", content: "Write a poem" }], max_tokens: 20, temperature: 0 };
    const whole = await body(post("/v1/chat/completions", request));

    const res = await post("/v1/chat/completions", { ...request, stream: true, stream_options: { include_usage: true } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const events = await readEvents(res);
    const chunks = events.slice(0, -1).map((e) => e.json);
    expect(events.at(-1)!.data).toBe("[DONE]");
    const id = chunks[0].id as string;
    expect(id).toMatch(/^chatcmpl-/);
    for (const c of chunks) expect(c).toMatchObject({ id, object: "chat.completion.chunk", model: "tiny-llama", created: expect.any(Number) });

    expect(chunks[0].choices).toEqual([{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null, logprobs: null }]);
    const content = chunks.slice(1, -2);
    expect(content.length).toBeGreaterThan(3); // piece by piece, not one buffered blob
    for (const c of content) {
      expect(c.choices).toEqual([{ index: 0, delta: { content: expect.any(String) }, finish_reason: null, logprobs: null }]);
      expect(c.usage).toBeNull(); // OpenAI's chunks carry `usage: null` when the last one will carry it
    }
    expect(chunks.at(-2).choices).toEqual([{ index: 0, delta: {}, finish_reason: "length", logprobs: null }]);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: whole.usage });
    expect(content.map((c) => c.choices[0].delta.content).join("")).toBe(whole.choices[0].message.content);

    // The openai client reads the same stream.
    const stream = await openai.chat.completions.create({ model: "x", messages: request.messages as never, max_tokens: 20, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = "";
    let usage: unknown;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(whole.choices[0].message.content);
    expect(usage).toEqual(whole.usage);
  });

  it("streams a text completion; without include_usage no chunk carries usage", async () => {
    const request = { prompt: "Once upon a time", max_tokens: 15, temperature: 0 };
    const whole = await body(post("/v1/completions", request));
    const events = await readEvents(await post("/v1/completions", { ...request, stream: true }));
    expect(events.at(-1)!.data).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => e.json);
    for (const c of chunks) {
      expect(c).toMatchObject({ id: expect.stringMatching(/^cmpl-/), object: "text_completion", model: "tiny-llama" });
      expect(c).not.toHaveProperty("usage");
    }
    expect(chunks.at(-1).choices).toEqual([{ index: 0, text: "", finish_reason: "length", logprobs: null }]);
    expect(chunks.slice(0, -1).map((c) => c.choices[0].text).join("")).toBe(whole.choices[0].text);
  });

  it("ends the text right before a stop string, spaces and all, with finish_reason stop", async () => {
    const request = { prompt: "The quick brown fox", max_tokens: 40, temperature: 0 };
    const full: string = (await body(post("/v1/completions", request))).choices[0].text;
    // A stop string that straddles a word boundary: its space is a SentencePiece "▁" inside a token.
    const space = full.indexOf(" ", 5);
    const stop = space > 0 ? full.slice(space - 1, space + 2) : full.slice(10, 13);
    const expected = full.slice(0, full.indexOf(stop));

    const cut = await body(post("/v1/completions", { ...request, stop: ["never-in-gibberish", stop] }));
    expect(cut.choices[0]).toMatchObject({ text: expected, finish_reason: "stop" });
    expect(cut.usage.completion_tokens).toBeLessThan(40);

    const events = await readEvents(await post("/v1/completions", { ...request, stop, stream: true }));
    const chunks = events.slice(0, -1).map((e) => e.json);
    expect(chunks.map((c) => c.choices[0].text).join("")).toBe(expected);
    expect(chunks.at(-1).choices[0].finish_reason).toBe("stop");
  });

  it("samples reproducibly: the same seed gives the same text at temperature > 0, another seed another", async () => {
    const ask = async (seed: number) =>
      (await openai.completions.create({ model: "tiny-llama", prompt: "In the beginning", max_tokens: 24, temperature: 1.3, top_p: 0.95, seed })).choices[0]!.text;
    const [a, b, c] = [await ask(42), await ask(42), await ask(43)];
    expect(b).toBe(a);
    expect(c).not.toBe(a);
  });

  it("refuses bad requests with OpenAI's error shape, naming the field", async () => {
    const error = async (res: Response, status: number) => {
      expect(res.status).toBe(status);
      return ((await res.json()) as { error: Record<string, unknown> }).error;
    };
    const malformed = await fetch(`${base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" });
    expect(await error(malformed, 400)).toEqual({ message: expect.stringMatching(/JSON/), type: "invalid_request_error", param: null, code: null });

    const user = { role: "user" as const, content: "hi" };
    expect(await error(await post("/v1/chat/completions", { messages: [user], n: 17 }), 400)).toMatchObject({ type: "invalid_request_error", param: "n" });
    // OpenAI's deprecated `function` role (the `tool` role replaced it, and is served).
    expect(await error(await post("/v1/chat/completions", { messages: [{ role: "function", name: "f", content: "x" }] }), 400)).toMatchObject({
      param: "messages[0].role",
      message: expect.stringContaining("messages[0].role"),
    });
    expect(await error(await post("/v1/chat/completions", { messages: [{ role: "tool", content: "x" }] }), 400)).toMatchObject({ param: "messages[0].tool_call_id" });
    expect(await error(await post("/v1/chat/completions", { messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), 400)).toMatchObject({
      param: "messages[0].content",
    });
    expect(await error(await post("/v1/completions", { prompt: "x", stop: ["a", "b", "c", "d", "e"] }), 400)).toMatchObject({ param: "stop" });
    expect(await error(await post("/v1/completions", { prompt: "x", temperature: 3 }), 400)).toMatchObject({ param: "temperature" });
    expect(await error(await fetch(`${base}/v1/embeddings`), 404)).toMatchObject({ type: "invalid_request_error", code: "unknown_url" });

    // Longer than the context: refused before a stream starts, so as a status, not an event.
    const long = "hello ".repeat(CTX + 10);
    for (const stream of [false, true]) {
      expect(await error(await post("/v1/completions", { prompt: long, stream }), 400)).toMatchObject({ param: "prompt", code: "context_length_exceeded" });
    }

    const thrown = await openai.chat.completions.create({ model: "tiny-llama", messages: [user], n: 0 }).catch((e: unknown) => e);
    expect(thrown).toBeInstanceOf(OpenAI.BadRequestError);
    expect(thrown).toMatchObject({ status: 400, param: "n", type: "invalid_request_error" });
  });

  it("decodes concurrent streams together, interleaved in time, and queues requests beyond --parallel", async () => {
    const stream = async (prompt: string) => readEvents(await post("/v1/completions", { prompt, max_tokens: 150, temperature: 0, stream: true }));
    const [a, b] = await Promise.all([stream("First story:"), stream("Second story:")]);
    const span = (events: SseEvent[]) => ({ first: events[0]!.at, last: events.at(-1)!.at });
    // Both had text before either finished...
    expect(Math.max(span(a).first, span(b).first)).toBeLessThan(Math.min(span(a).last, span(b).last));
    // ...and not in two runs one after the other: arrivals alternate all along.
    const merged = [...a.map((e) => ({ at: e.at, from: "a" })), ...b.map((e) => ({ at: e.at, from: "b" }))].sort((x, y) => x.at - y.at);
    const switches = merged.filter((e, i) => i > 0 && e.from !== merged[i - 1]!.from).length;
    expect(switches).toBeGreaterThan(20);

    // Three requests on two sequences: one waits its turn, then completes in full.
    let sawQueued = false;
    let polling = true;
    const poll = (async () => {
      while (polling) {
        const s = await stats();
        if (s.queued_requests === 1 && s.active_requests === 2) sawQueued = true;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    const three = await Promise.all([1, 2, 3].map((i) => body(post("/v1/completions", { prompt: `Request ${i}`, max_tokens: 250, temperature: 0 }))));
    polling = false;
    await poll;
    expect(sawQueued).toBe(true);
    for (const r of three) {
      expect(r.choices[0].finish_reason).toBe("length");
      expect(r.usage.completion_tokens).toBe(250);
    }
    expect(await stats()).toMatchObject({ active_requests: 0, queued_requests: 0 });
  });

  it("stops at the end of the context with finish_reason length", async () => {
    const res = await body(post("/v1/completions", { prompt: "Hello world", max_tokens: 5000, temperature: 0 }));
    expect(res.choices[0].finish_reason).toBe("length");
    expect(res.usage).toEqual({ prompt_tokens: 3, completion_tokens: CTX - 3, total_tokens: CTX });
  });

  it("stops decoding at once when a streaming client disconnects, and frees its sequence", async () => {
    const before = (await stats()).generated_tokens_total;
    const started = performance.now();
    const controller = new AbortController();
    const res = await post("/v1/completions", { prompt: "A very long story", max_tokens: 5000, temperature: 0, stream: true }, { signal: controller.signal });
    const events = await readEvents(res, 5);
    expect(events).toHaveLength(5);
    controller.abort();
    await waitFor(async () => (await stats()).active_requests === 0, 5000, 10);
    const settled = (await stats()).generated_tokens_total;
    await new Promise((r) => setTimeout(r, 300));
    expect((await stats()).generated_tokens_total).toBe(settled); // nothing decodes for it any more
    // The whole request would have decoded ~1000 tokens; it stopped a few after the client left.
    expect(settled - before).toBeGreaterThanOrEqual(5);
    expect(settled - before).toBeLessThan(500);
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it("stops decoding when a non-streaming client disconnects", async () => {
    const before = (await stats()).generated_tokens_total;
    const controller = new AbortController();
    const pending = post("/v1/chat/completions", { messages: [{ role: "user", content: "Go on forever" }], temperature: 0 }, { signal: controller.signal }).catch((e: unknown) => e);
    await waitFor(async () => (await stats()).generated_tokens_total - before > 20, 5000, 5);
    controller.abort();
    expect(await pending).toBeInstanceOf(Error);
    await waitFor(async () => (await stats()).active_requests === 0, 5000, 10);
    const settled = (await stats()).generated_tokens_total;
    await new Promise((r) => setTimeout(r, 300));
    expect((await stats()).generated_tokens_total).toBe(settled);
    expect(settled - before).toBeLessThan(500);
  });

  it("refuses bad flags with exit code 2 and a message naming them", async () => {
    const runs = [startEngine(["--model", "/nonexistent.gguf", "--port", "1", "--ctx-size", "64"]), startEngine(["--bogus", "1"]), startEngine(["--model", MAIN, "--port", "abc", "--ctx-size", "64"])];
    const codes = await Promise.all(runs.map((r) => r.exited));
    expect(codes).toEqual([2, 2, 2]);
    expect(runs[0]!.stderr.join("\n")).toMatch(/--model: no such file/);
    expect(runs[1]!.stderr.join("\n")).toMatch(/bogus/);
    expect(runs[2]!.stderr.join("\n")).toMatch(/--port/);
  });

  it("on SIGTERM ends running streams, frees the model and exits 0", async () => {
    const res = await post("/v1/completions", { prompt: "Keep going", max_tokens: 5000, stream: true });
    const reading = readEvents(res);
    await waitFor(async () => (await stats()).active_requests === 1, 5000, 10);
    const exited = new Promise<number | null>((resolve) => server.once("exit", (code) => resolve(code)));
    server.kill("SIGTERM");
    const events = await reading;
    // The stream ends with OpenAI's error event (the openai client raises it) rather than hanging.
    expect(events.at(-1)!.json).toMatchObject({ error: { type: "server_error", code: "engine_closing" } });
    expect(await exited).toBe(0);
  });
});
