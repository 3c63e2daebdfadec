import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmbeddedEngine, type EmbeddedEngineProcess } from "./support/embedded-engine-process.ts";
import { LLAMA_SERVER, llamaServerBuilt, startLlamaServerEngine } from "./support/llama-server-engine.ts";

/*
 * The sampling fields beyond temperature and top_p on the embedded engine, through the real openai
 * client on the tiny model, asserted by what they must do to the output; and the fields it cannot
 * honour, refused with a 400 naming them.
 */

let engine: EmbeddedEngineProcess;
let openai: OpenAI;

beforeAll(async () => {
  engine = await startEmbeddedEngine({ parallel: 2, ctxSize: 1024 });
  openai = new OpenAI({ baseURL: `${engine.base}/v1`, apiKey: "unused", maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await engine?.stop();
});

const prompt = "Once upon a time";
/** Extra fields the openai client's types do not have (vLLM's and llama-server's): sent as they are. */
const extra = (fields: Record<string, unknown>) => fields as object;

async function complete(fields: Record<string, unknown>): Promise<string> {
  const out = await openai.completions.create({ model: "tiny-llama", prompt, max_tokens: 32, ...fields } as never);
  return (out as { choices: { text: string }[] }).choices[0]!.text;
}

/** How often the most repeated word of `text` appears. */
function maxRepeats(text: string): number {
  const counts = new Map<string, number>();
  for (const w of text.split(/\s+/).filter(Boolean)) counts.set(w, (counts.get(w) ?? 0) + 1);
  return Math.max(0, ...counts.values());
}

describe("sampling fields on the embedded engine (tiny model)", () => {
  it("top_k 1 and min_p 1 leave only the likeliest token: sampling at temperature 1 equals greedy decoding", async () => {
    const greedy = await complete({ temperature: 0 });
    for (const seed of [1, 2, 3]) {
      expect(await complete({ temperature: 1, seed, ...extra({ top_k: 1 }) })).toBe(greedy);
      expect(await complete({ temperature: 1, seed, ...extra({ min_p: 1 }) })).toBe(greedy);
    }
    // Without them, sampling at temperature 1 does differ (the model is not one-token-sure).
    const sampled = await Promise.all([1, 2, 3].map((seed) => complete({ temperature: 1, seed })));
    expect(sampled.some((t) => t !== greedy)).toBe(true);
  }, 60_000);

  it("frequency, presence and repetition penalties change greedy output and cut its repeats", async () => {
    const greedy = await complete({ temperature: 0, max_tokens: 64 });
    for (const penalty of [{ frequency_penalty: 2 }, { presence_penalty: 2 }, extra({ repetition_penalty: 3 })]) {
      const penalised = await complete({ temperature: 0, max_tokens: 64, ...penalty });
      expect(penalised, JSON.stringify(penalty)).not.toBe(greedy);
      expect(maxRepeats(penalised), JSON.stringify(penalty)).toBeLessThanOrEqual(maxRepeats(greedy));
    }
    // Same on the chat route.
    const chat = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: prompt }], temperature: 0, max_completion_tokens: 16, presence_penalty: 1.5 });
    expect(typeof chat.choices[0]!.message.content).toBe("string");
  }, 60_000);

  it("completion logprobs: tokens, token_logprobs, top_logprobs and text_offset line up with the text", async () => {
    const out = await openai.completions.create({ model: "tiny-llama", prompt, temperature: 1, seed: 4, max_tokens: 12, logprobs: 2 });
    const { text, logprobs } = out.choices[0]!;
    const lp = logprobs!;
    expect(lp.tokens!.join("")).toBe(text);
    expect(lp.token_logprobs).toHaveLength(lp.tokens!.length);
    expect(lp.top_logprobs).toHaveLength(lp.tokens!.length);
    for (const top of lp.top_logprobs!) expect(Object.keys(top).length).toBeLessThanOrEqual(2);
    let offset = 0;
    lp.tokens!.forEach((t, i) => {
      expect(lp.text_offset![i]).toBe(offset);
      expect(lp.token_logprobs![i]).toBeLessThanOrEqual(0);
      offset += t.length;
    });
  }, 30_000);

  it("logit_bias: +100 on one token makes greedy decoding write only it; an id outside the vocabulary is a 400", async () => {
    const out = await openai.completions.create({ model: "tiny-llama", prompt, temperature: 0, max_tokens: 6, logprobs: 0, logit_bias: { "3000": 100 } });
    const tokens = out.choices[0]!.logprobs!.tokens!;
    expect(tokens).toHaveLength(6);
    expect(new Set(tokens.map((t) => t.trim())).size).toBe(1);
    const unbiased = await openai.completions.create({ model: "tiny-llama", prompt, temperature: 0, max_tokens: 6 });
    expect(unbiased.choices[0]!.text).not.toBe(out.choices[0]!.text);
    const err = await openai.chat.completions.create({ model: "tiny-llama", messages: [{ role: "user", content: "x" }], logit_bias: { "999999": 5 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as InstanceType<typeof OpenAI.APIError>).error).toMatchObject({ param: "logit_bias" });
  }, 30_000);

  it("n choices: each sampled on its own (seeded choices differ), usage adding up; streamed with each chunk's index", async () => {
    const out = await openai.completions.create({ model: "tiny-llama", prompt, temperature: 1, seed: 9, max_tokens: 10, n: 3 });
    expect(out.choices.map((c) => c.index)).toEqual([0, 1, 2]);
    const texts = out.choices.map((c) => c.text);
    expect(new Set(texts).size).toBe(3);
    const single = await openai.completions.create({ model: "tiny-llama", prompt, temperature: 1, seed: 9, max_tokens: 10 });
    expect(texts[0]).toBe(single.choices[0]!.text);
    expect(out.usage!.prompt_tokens).toBe(single.usage!.prompt_tokens);
    expect(out.usage!.completion_tokens).toBe(30);

    const messages = [{ role: "user" as const, content: "Hi" }];
    const whole = await openai.chat.completions.create({ model: "tiny-llama", messages, temperature: 1, seed: 4, max_completion_tokens: 8, n: 2 });
    const stream = await openai.chat.completions.create({ model: "tiny-llama", messages, temperature: 1, seed: 4, max_completion_tokens: 8, n: 2, stream: true });
    const streamed = ["", ""];
    const finished = [false, false];
    for await (const chunk of stream) {
      for (const c of chunk.choices) {
        streamed[c.index] += c.delta.content ?? "";
        if (c.finish_reason) finished[c.index] = true;
      }
    }
    expect(finished).toEqual([true, true]);
    expect(streamed).toEqual(whole.choices.map((c) => c.message.content));
  }, 60_000);

  it("refuses what it cannot honour, naming the field: top_logprobs without logprobs, n over 16, out-of-range values", async () => {
    const refusal = async (request: Promise<unknown>) => {
      const err = await request.then(() => expect.unreachable("the request should have been refused"), (e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      const e = err as InstanceType<typeof OpenAI.APIError>;
      return { status: e.status, param: (e.error as { param: string | null }).param };
    };
    const messages = [{ role: "user" as const, content: "hi" }];
    expect(await refusal(openai.chat.completions.create({ model: "tiny-llama", messages, top_logprobs: 3 }))).toEqual({ status: 400, param: "top_logprobs" });
    expect(await refusal(openai.chat.completions.create({ model: "tiny-llama", messages, logprobs: true, top_logprobs: 21 }))).toEqual({ status: 400, param: "top_logprobs" });
    expect(await refusal(openai.completions.create({ model: "tiny-llama", prompt, logprobs: 21 }))).toEqual({ status: 400, param: "logprobs" });
    expect(await refusal(openai.chat.completions.create({ model: "tiny-llama", messages, n: 17 }))).toEqual({ status: 400, param: "n" });
    expect(await refusal(openai.chat.completions.create({ model: "tiny-llama", messages, frequency_penalty: 3 }))).toEqual({ status: 400, param: "frequency_penalty" });
  }, 30_000);
});

/** Chat logprobs as OpenAI shapes them, on every engine that serves them. */
function describeChatLogprobs(name: string, start: () => Promise<{ base: string; stop(): Promise<void> }>, options: { streamedTopsOnlyWhenAsked: boolean }): void {
  describe(name, () => {
    let server: { base: string; stop(): Promise<void> } | undefined;
    let client_: OpenAI | undefined;
    const client = () => client_!;
    beforeAll(async () => {
      server = await start();
      client_ = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: "unused", maxRetries: 0 });
    }, 60_000);
    afterAll(async () => {
      await server?.stop();
    });

    it("chat logprobs: one entry per token of the content, with bytes and top_logprobs; greedy picks the likeliest", async () => {
      const messages = [{ role: "user" as const, content: "Tell me a story" }];
      const out = await client().chat.completions.create({ model: "tiny-llama", messages, temperature: 0, max_completion_tokens: 16, logprobs: true, top_logprobs: 3 });
      const choice = out.choices[0]!;
      const content = choice.logprobs!.content!;
      expect(content.length).toBe(out.usage!.completion_tokens);
      expect(content.map((e) => e.token).join("")).toBe(choice.message.content);
      for (const e of content) {
        expect(e.logprob).toBeLessThanOrEqual(0);
        expect(e.bytes).toEqual([...Buffer.from(e.token, "utf8")]);
        expect(e.top_logprobs).toHaveLength(3);
        const tops = e.top_logprobs.map((t) => t.logprob);
        expect([...tops].sort((a, b) => b - a)).toEqual(tops);
        // Greedy decoding takes the likeliest token, whose log probability is the first alternative's.
        expect(e.top_logprobs[0]!.logprob).toBeCloseTo(e.logprob, 6);
      }
      // Streamed, the chunks' entries add up to the same tokens.
      const stream = await client().chat.completions.create({ model: "tiny-llama", messages, temperature: 0, max_completion_tokens: 16, logprobs: true, stream: true });
      let text = "";
      const tokens: string[] = [];
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? "";
        for (const e of chunk.choices[0]?.logprobs?.content ?? []) {
          // OpenAI sends alternatives only when top_logprobs asks for them; llama-server sends its own default number.
          if (options.streamedTopsOnlyWhenAsked) expect(e.top_logprobs ?? []).toEqual([]);
          tokens.push(e.token);
        }
      }
      expect(text).toBe(choice.message.content);
      expect(tokens.join("")).toBe(text);
      // Without logprobs: null, as OpenAI.
      const plain = await client().chat.completions.create({ model: "tiny-llama", messages, logprobs: false, max_completion_tokens: 2 });
      expect(plain.choices[0]!.logprobs ?? null).toBeNull();
    }, 60_000);
  });
}

describeChatLogprobs("chat logprobs on the embedded engine (tiny model)", () => startEmbeddedEngine({ parallel: 2, ctxSize: 1024 }), { streamedTopsOnlyWhenAsked: true });

describe.skipIf(!llamaServerBuilt)(`chat logprobs on llama-server (llamacpp profile${llamaServerBuilt ? "" : `: no llama-server at ${LLAMA_SERVER}, skipped; set HEARTH_LLAMA_SERVER`})`, () => {
  describeChatLogprobs("the same shape", () => startLlamaServerEngine({ threads: 1, "ctx-size": 1024 }), { streamedTopsOnlyWhenAsked: false });
});
