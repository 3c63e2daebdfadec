import { describe, expect, it } from "vitest";
import { estimateTokens, textTokens } from "./token-estimate.ts";
import { checkContext, contextWindow } from "./context-window.ts";
import { queueBound } from "./queue-bound.ts";

describe("token estimate", () => {
  it("counts UTF-8 bytes / 4, rounded up", () => {
    expect(textTokens("")).toBe(0);
    expect(textTokens("abcd")).toBe(1);
    expect(textTokens("abcde")).toBe(2);
    expect(textTokens("é")).toBe(1); // 2 bytes
    expect(textTokens("😀😀")).toBe(2); // 8 bytes
  });

  it("chat: text + 4 per message + 3 priming; max_completion_tokens over max_tokens; times n", () => {
    const body = { messages: [{ role: "system", content: "x".repeat(40) }, { role: "user", content: [{ type: "text", text: "y".repeat(8) }, { type: "image_url", image_url: { url: "data:..." } }] }], max_tokens: 50, n: 2 };
    expect(estimateTokens("/v1/chat/completions", body)).toEqual({ promptTokens: 3 + 4 + 10 + 4 + 2, longestPromptTokens: 23, maxTokens: 50, maxTokensParam: "max_tokens", reserveTokens: 23 + 100 });
    const mct = estimateTokens("/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], max_tokens: 9, max_completion_tokens: 7 });
    expect(mct.maxTokens).toBe(7);
    expect(mct.maxTokensParam).toBe("max_completion_tokens");
  });

  it("completions: strings, lists of strings, token ids; every prompt gets its max_tokens", () => {
    expect(estimateTokens("/v1/completions", { prompt: "abcdefgh", max_tokens: 4 }).reserveTokens).toBe(6);
    expect(estimateTokens("/v1/completions", { prompt: [1, 2, 3], max_tokens: 4 }).reserveTokens).toBe(7);
    const batch = estimateTokens("/v1/completions", { prompt: ["abcd", "abcdefghijkl"], max_tokens: 10 });
    expect(batch).toEqual({ promptTokens: 4, longestPromptTokens: 3, maxTokens: 10, maxTokensParam: "max_tokens", reserveTokens: 24 });
    expect(estimateTokens("/v1/completions", { prompt: [[1, 2], [3, 4, 5]] }).longestPromptTokens).toBe(3);
  });

  it("ignores hostile numbers: negative, fractional, huge or non-numeric max_tokens count as absent", () => {
    for (const v of [-1, 1.5, "100", null, 2 ** 60]) expect(estimateTokens("/v1/completions", { prompt: "a", max_tokens: v }).maxTokens).toBe(0);
  });

  it("embeddings: inputs only", () => {
    expect(estimateTokens("/v1/embeddings", { input: ["abcd", "abcdefgh"] })).toMatchObject({ promptTokens: 3, reserveTokens: 3, maxTokens: 0 });
  });
});

describe("context window", () => {
  it("comes from the engine spec, the embedded default, or nowhere", () => {
    expect(contextWindow({ kind: "openai", profile: "vllm", args: { "max-model-len": 8192 } })).toBe(8192);
    expect(contextWindow({ kind: "openai", profile: "vllm", args: {} })).toBeUndefined();
    expect(contextWindow({ kind: "openai", profile: "sglang", args: { "context-length": 4096 } })).toBe(4096);
    expect(contextWindow({ kind: "openai", profile: "trtllm", args: { max_seq_len: 2048 } })).toBe(2048);
    expect(contextWindow({ kind: "openai", profile: "llamacpp", args: { "ctx-size": 0 } })).toBeUndefined();
    expect(contextWindow({ kind: "openai", profile: "llamacpp", args: { "ctx-size": 1024 } })).toBe(1024);
    expect(contextWindow({ kind: "openai", profile: "embedded", args: {} })).toBe(2048);
    expect(contextWindow({ kind: "openai", profile: "embedded", args: { "ctx-size": 512 } })).toBe(512);
    expect(contextWindow({ kind: "handler" })).toBeUndefined();
  });

  it("refuses what passes the window, naming max_tokens when the prompt alone fits", () => {
    expect(checkContext(100, { longestPromptTokens: 60, maxTokens: 40, maxTokensParam: "max_tokens" }, "messages")).toBeUndefined();
    expect(checkContext(100, { longestPromptTokens: 60, maxTokens: 41, maxTokensParam: "max_tokens" }, "messages")).toMatchObject({ param: "max_tokens", window: 100 });
    expect(checkContext(100, { longestPromptTokens: 101, maxTokens: 0, maxTokensParam: null }, "messages")).toMatchObject({ param: "messages" });
    expect(checkContext(undefined, { longestPromptTokens: 1e9, maxTokens: 0, maxTokensParam: null }, "prompt")).toBeUndefined();
  });
});

describe("queue bound", () => {
  it("is a multiple of workersMax × concurrency, never below the floor; 0 is off", () => {
    expect(queueBound(0, 50, 3, 8)).toBeUndefined();
    expect(queueBound(10, 50, 3, 8)).toBe(240);
    expect(queueBound(2, 50, 3, 1)).toBe(50);
    expect(queueBound(2, 0, 0, 1)).toBe(2); // workersMax 0 counts as one worker
  });
});
