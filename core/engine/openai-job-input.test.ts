import { describe, expect, it } from "vitest";
import { chunkText, toEngineRequest, tokensChunk, usageOf } from "./openai-job-input.ts";

describe("toEngineRequest", () => {
  it("passes an OpenAI route through, filling a missing model with the served name", () => {
    const r = toEngineRequest({ openai_route: "/v1/chat/completions", openai_input: { messages: [{ role: "user", content: "hi" }] } }, "tiny");
    expect(r).toEqual({
      ok: true,
      request: { shape: "openai", method: "POST", route: "/v1/chat/completions", body: { messages: [{ role: "user", content: "hi" }], model: "tiny" }, stream: false, callerWantsUsage: false },
    });
  });

  it("keeps the caller's model and asks a streamed passthrough for usage, remembering whether the caller did", () => {
    const r = toEngineRequest({ openai_route: "/v1/completions", openai_input: { model: "m", prompt: "x", stream: true } }, "tiny");
    expect(r.ok && r.request).toMatchObject({ body: { model: "m", stream: true, stream_options: { include_usage: true } }, stream: true, callerWantsUsage: false });
    const asked = toEngineRequest({ openai_route: "/v1/completions", openai_input: { prompt: "x", stream: true, stream_options: { include_usage: true } } }, "tiny");
    expect(asked.ok && asked.request).toMatchObject({ callerWantsUsage: true });
  });

  it("passes embeddings through as one JSON answer, even with a stray stream flag", () => {
    const r = toEngineRequest({ openai_route: "/v1/embeddings", openai_input: { input: ["a", "b"], stream: true } }, "tiny");
    expect(r).toEqual({ ok: true, request: { shape: "openai", method: "POST", route: "/v1/embeddings", body: { input: ["a", "b"], stream: true, model: "tiny" }, stream: false, callerWantsUsage: false } });
  });

  it("maps /v1/models to a GET without a body", () => {
    expect(toEngineRequest({ openai_route: "/v1/models" }, "tiny")).toEqual({ ok: true, request: { shape: "openai", method: "GET", route: "/v1/models", stream: false } });
  });

  it("refuses routes the engine is not asked for", () => {
    const r = toEngineRequest({ openai_route: "/v1/files", openai_input: {} }, "tiny");
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error).toMatch(/openai_route/);
  });

  it("maps worker-vllm's messages + sampling_params to a streamed chat completion", () => {
    const r = toEngineRequest({ messages: [{ role: "user", content: "hi" }], sampling_params: { max_tokens: 5, temperature: 0, stop: ["\n"] } }, "tiny");
    expect(r).toEqual({
      ok: true,
      request: {
        shape: "tokens",
        method: "POST",
        route: "/v1/chat/completions",
        body: { max_tokens: 5, temperature: 0, stop: ["\n"], model: "tiny", stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "hi" }] },
        stream: false,
        callerWantsUsage: false,
      },
    });
  });

  it("maps a prompt to a completion and keeps the job's stream flag", () => {
    const r = toEngineRequest({ prompt: "Once", stream: true }, "tiny");
    expect(r.ok && r.request).toMatchObject({ shape: "tokens", route: "/v1/completions", body: { prompt: "Once" }, stream: true });
  });

  it("wants exactly one of prompt and messages", () => {
    expect(toEngineRequest({ sampling_params: {} }, "tiny").ok).toBe(false);
    expect(toEngineRequest({ prompt: "a", messages: [{ role: "user", content: "b" }] }, "tiny").ok).toBe(false);
    expect(toEngineRequest("just a string", "tiny").ok).toBe(false);
  });
});

describe("chunk helpers", () => {
  it("reads the text of chat and completion chunks", () => {
    expect(chunkText({ choices: [{ delta: { content: "a" } }] })).toBe("a");
    expect(chunkText({ choices: [{ text: "b" }] })).toBe("b");
    expect(chunkText({ choices: [{ delta: { role: "assistant" } }] })).toBeUndefined();
    expect(chunkText({ choices: [] })).toBeUndefined();
  });

  it("reads usage and builds worker-vllm chunks", () => {
    expect(usageOf({ usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } })).toEqual({ promptTokens: 3, completionTokens: 4 });
    expect(usageOf({ usage: null })).toBeUndefined();
    // An embeddings answer: prompt tokens only, nothing generated.
    expect(usageOf({ object: "list", data: [], usage: { prompt_tokens: 5, total_tokens: 5 } })).toEqual({ promptTokens: 5, completionTokens: 0 });
    expect(usageOf({ usage: { prompt_tokens: 5 } })).toBeUndefined();
    expect(tokensChunk("x")).toEqual({ choices: [{ tokens: ["x"] }] });
    expect(tokensChunk("", { promptTokens: 1, completionTokens: 2 })).toEqual({ choices: [{ tokens: [] }], usage: { input: 1, output: 2 } });
  });
});
