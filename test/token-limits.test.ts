import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

/**
 * Token limits and the context window end to end: the real `openai` SDK against the API, a real
 * worker running the embedded engine with the project's tiny model, the control plane settling
 * each job's held tokens with the engine's real counts.
 */
describe("token limits and context windows on an embedded-engine endpoint", () => {
  let stack: Stack;
  let dir: string;
  let ep: string;
  let key: string;
  let tenantId: string;

  const client = (k: string) => new OpenAI({ baseURL: `${stack.api.url}/v2/${ep}/openai/v1`, apiKey: k, maxRetries: 0 });
  const holds = async () => (await stack.redis.keys(`${stack.redisPrefix}:rl:hold:*`)).length;
  const setTokens = async (id: string, tokensPerMinute: number | null) => {
    const r = await stack.call("PUT", `/admin/tenants/${id}/limits`, { key: "stack-admin-token-0123456789", body: { tokensPerMinute } });
    expect(r.status).toBe(200);
  };

  beforeAll(async () => {
    stack = await startStack();
    dir = await mkdtemp(join(tmpdir(), "hearth-tokens-"));
    await chmod(dir, 0o755);
    const modelPath = ensureTinyLlamaFile(join(dir, "tiny-llama.gguf"));
    ({ id: tenantId, key } = await stack.tenantWithId("tokens"));
    ep = await stack.endpoint(key, {
      engine: { kind: "openai", profile: "embedded", model: `file://${modelPath}`, args: { threads: 1, "ctx-size": 1024 }, concurrency: 4 },
      workersMin: 1,
      workersMax: 1,
    });
    await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body.workers.idle === 1, 60_000);
  });
  afterAll(async () => {
    await stack?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("refuses a prompt + max_tokens past the endpoint's ctx-size with OpenAI's 400 context_length_exceeded, before queueing", async () => {
    const openai = client(key);
    const tooLong = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "hi" }], max_tokens: 2000 }).catch((e: unknown) => e);
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    const err = tooLong as InstanceType<typeof OpenAI.BadRequestError>;
    expect(err.status).toBe(400);
    expect(err.code).toBe("context_length_exceeded");
    expect(err.param).toBe("max_tokens");
    expect(err.message).toContain("maximum context length is 1024 tokens");
    const hugePrompt = await openai.completions.create({ model: "tiny-llama", prompt: "x".repeat(8000), max_tokens: 1 }).catch((e: unknown) => e);
    expect(hugePrompt).toBeInstanceOf(OpenAI.BadRequestError);
    expect((hugePrompt as InstanceType<typeof OpenAI.BadRequestError>).param).toBe("prompt");
    // Nothing reached the queue: no job was ever accepted for the endpoint.
    const health = await stack.call("GET", `/v2/${ep}/health`, { key });
    expect(health.body.jobs.inQueue + health.body.jobs.inProgress + health.body.jobs.completed + health.body.jobs.failed).toBe(0);
    // What fits runs.
    const ok = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
    expect(ok.choices).toHaveLength(1);
  });

  it("trips on the estimate (a key's own limit): a burst admits what the bucket holds, and a request larger than the limit is refused as OpenAI refuses it", async () => {
    const made = await stack.call("POST", "/api/v1/keys", { key, body: { name: "tokens", scope: "run", rateLimits: { tokensPerMinute: 300 } } });
    expect(made.status).toBe(200);
    const openai = client(made.body.key);
    const tooBig = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "hi" }], max_tokens: 400 }).catch((e: unknown) => e);
    expect(tooBig).toBeInstanceOf(OpenAI.RateLimitError);
    const big = tooBig as InstanceType<typeof OpenAI.RateLimitError>;
    expect(big.status).toBe(429);
    expect(big.code).toBe("rate_limit_exceeded");
    expect(big.type).toBe("tokens");
    expect(big.headers?.get("retry-after")).toBeTruthy();
    // Each asks about 3 + 4 + 1 + 120 = 128 tokens: two fit in 300, the third does not.
    const ask = () =>
      openai.chat.completions
        .create({ model: "tiny-llama", messages: [{ role: "user", content: "hi" }], max_tokens: 120 })
        .withResponse()
        .catch((e: unknown) => e);
    const burst = await Promise.all([ask(), ask(), ask()]);
    const admitted = burst.filter((b) => !(b instanceof Error)) as { response: Response }[];
    const refused = burst.filter((b) => b instanceof OpenAI.RateLimitError) as InstanceType<typeof OpenAI.RateLimitError>[];
    expect(admitted).toHaveLength(2);
    expect(refused).toHaveLength(1);
    for (const a of admitted) {
      expect(a.response.headers.get("x-ratelimit-limit-tokens")).toBe("300");
      expect(Number(a.response.headers.get("x-ratelimit-remaining-tokens"))).toBeLessThan(300);
    }
    expect(refused[0]!.headers?.get("x-ratelimit-remaining-tokens")).toBe(String(300 - 2 * 128));
  });

  it("trips on the real counts: the control plane charges what the engine counted past the estimate", async () => {
    await setTokens(tenantId, 900);
    const openai = client(key);
    // "a " is 2 bytes (estimated half a token) but one token to the model: the real prompt is about twice the estimate.
    const first = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "a ".repeat(400) }], max_tokens: 1 });
    const estimate = 3 + 4 + 200 + 1;
    expect(first.usage!.prompt_tokens).toBeGreaterThan(estimate + 150);
    // Settled once the job's completion reached the control plane.
    await waitFor(async () => (await holds()) === 0, 20_000);
    // 598 tokens: it would fit after the estimate alone (900 - 208 = 692), not after the real count
    // (900 - ~414 = 486, plus 15 a second regained while we waited).
    const second = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "hi" }], max_tokens: 590 }).catch((e: unknown) => e);
    expect(second).toBeInstanceOf(OpenAI.RateLimitError);
    expect((second as InstanceType<typeof OpenAI.RateLimitError>).type).toBe("tokens");
    await setTokens(tenantId, null);
  });

  it("a streamed completion carries the token headers and its hold is settled once it ends", async () => {
    const t = await stack.call("POST", "/api/v1/keys", { key, body: { name: "stream", scope: "run", rateLimits: { tokensPerMinute: 5000 } } });
    const res = await fetch(`${stack.api.url}/v2/${ep}/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${t.body.key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "tiny-llama", messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 16, stream: true }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    expect(res.headers.get("x-ratelimit-limit-tokens")).toBe("5000");
    // 3 + 4 + 4 ("Tell me a story" is 15 bytes) + 16 held.
    expect(res.headers.get("x-ratelimit-remaining-tokens")).toBe(String(5000 - 27));
    expect(await res.text()).toContain("data: [DONE]");
    await waitFor(async () => (await holds()) === 0, 20_000);
  });
});
