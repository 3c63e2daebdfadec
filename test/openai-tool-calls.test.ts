import { Ajv } from "ajv";
import OpenAI from "openai";
import type { ChatCompletionChunk, ChatCompletionMessageParam, ChatCompletionTool } from "openai/resources/chat/completions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_CALLS_PER_TURN } from "../worker/engines/embedded/tool-calls.ts";
import { startEmbeddedEngine } from "./support/embedded-engine-process.ts";
import { LLAMA_SERVER, llamaServerBuilt, startLlamaServerEngine } from "./support/llama-server-engine.ts";

/*
 * Function calling through the real openai client, on the tiny gibberish model: the grammar makes
 * every call name a declared tool and its arguments validate against the tool's parameter schema,
 * whatever the model would write. The behaviour runs against the embedded engine and, where one is
 * built, llama.cpp's own llama-server (which makes its own grammar from the tools, `--jinja`); the
 * parallel-call details and the refusals are the embedded engine's own rules.
 */

const weatherParams = {
  type: "object",
  properties: {
    city: { type: "string", minLength: 1, maxLength: 20 },
    unit: { type: "string", enum: ["celsius", "fahrenheit"] },
    days: { type: "integer", minimum: 1, maximum: 7 },
  },
  required: ["city", "unit", "days"],
  additionalProperties: false,
} as const;
const timeParams = { type: "object", properties: { zone: { type: "string", enum: ["UTC", "CET"] } }, required: ["zone"], additionalProperties: false } as const;

const tools: ChatCompletionTool[] = [
  { type: "function", function: { name: "get_weather", description: "Weather forecast for a city", parameters: weatherParams } },
  { type: "function", function: { name: "get_time", description: "The current time", parameters: timeParams } },
];
const ajv = new Ajv({ strict: true });
const validators: Record<string, (v: unknown) => boolean> = { get_weather: ajv.compile(weatherParams), get_time: ajv.compile(timeParams) };
const messages: ChatCompletionMessageParam[] = [{ role: "user", content: "What is the weather in Paris?" }];

/** Call ids: the embedded engine's are `call_` and 24 characters, as OpenAI's; llama-server's are its own random strings. */
let idPattern = /^call_[A-Za-z0-9]{24}$/;

function expectValidCall(call: { id: string; type: string; function: { name: string; arguments: string } }, name?: string): void {
  expect(call.type).toBe("function");
  expect(call.id).toMatch(idPattern);
  if (name) expect(call.function.name).toBe(name);
  const validate = validators[call.function.name];
  expect(validate, call.function.name).toBeDefined();
  expect(validate!(JSON.parse(call.function.arguments)), call.function.arguments).toBe(true);
}

/** Joins a stream's `delta.tool_calls` by index, as OpenAI's clients do, checking each call's first delta carries its id and name. */
async function collectToolCalls(stream: AsyncIterable<ChatCompletionChunk>): Promise<{ calls: { id: string; type: string; function: { name: string; arguments: string } }[]; content: string; finish: string | null; deltas: number }> {
  const calls: { id: string; type: string; function: { name: string; arguments: string } }[] = [];
  let finish: string | null = null;
  let content = "";
  let deltas = 0;
  for await (const chunk of stream) {
    const choice = chunk.choices[0];
    if (!choice) continue;
    content += choice.delta.content ?? "";
    for (const d of choice.delta.tool_calls ?? []) {
      deltas++;
      if (!calls[d.index]) {
        expect(d.index, "calls are numbered in order").toBe(calls.length);
        expect(d.id).toMatch(idPattern);
        calls[d.index] = { id: d.id!, type: d.type!, function: { name: d.function!.name!, arguments: "" } };
      }
      calls[d.index]!.function.arguments += d.function?.arguments ?? "";
    }
    finish = choice.finish_reason ?? finish;
  }
  return { calls, content, finish, deltas };
}

async function refusal(request: Promise<unknown>): Promise<{ status: number; param: string | null }> {
  const err = await request.then(
    () => expect.unreachable("the request should have been refused"),
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.APIError);
  const e = err as InstanceType<typeof OpenAI.APIError>;
  return { status: e.status!, param: (e.error as { param: string | null }).param };
}

/** What every engine serving the OpenAI API with tools must do. */
function describeToolBehaviour(name: string, start: () => Promise<{ base: string; stop(): Promise<void> }>, ids: RegExp): void {
  describe(name, () => {
    let engine: { base: string; stop(): Promise<void> } | undefined;
    let openai: OpenAI | undefined;
    const client = () => openai!;
    beforeAll(async () => {
      engine = await start();
      openai = new OpenAI({ baseURL: `${engine.base}/v1`, apiKey: "unused", maxRetries: 0 });
      idPattern = ids;
    }, 60_000);
    afterAll(async () => {
      await engine?.stop();
    });

    it('tool_choice "required": calls to declared tools whose arguments validate, across sampled outputs', async () => {
      // Concurrent: the engine decodes them in one batch.
      const outs = await Promise.all([1, 2, 5].map((seed) => client().chat.completions.create({ model: "tiny-llama", messages, tools, tool_choice: "required", temperature: 1, seed })));
      for (const out of outs) {
        const choice = out.choices[0]!;
        expect(choice.finish_reason).toBe("tool_calls");
        expect(choice.message.content).toBeNull();
        const calls = choice.message.tool_calls!;
        expect(calls.length).toBeGreaterThanOrEqual(1);
        expect(calls.length).toBeLessThanOrEqual(MAX_CALLS_PER_TURN);
        for (const call of calls) expectValidCall(call as never);
        expect(new Set(calls.map((c) => c.id)).size).toBe(calls.length);
      }
    }, 120_000);

    it("a named function, streamed: delta.tool_calls chunks with index build calls whose arguments validate", async () => {
      const stream = await client().chat.completions.create({
        model: "tiny-llama",
        messages,
        tools,
        tool_choice: { type: "function", function: { name: "get_weather" } },
        temperature: 1,
        seed: 11,
        stream: true,
      });
      const { calls, content, finish, deltas } = await collectToolCalls(stream);
      expect(content).toBe("");
      expect(finish).toBe("tool_calls");
      expect(calls.length).toBeGreaterThanOrEqual(1);
      for (const call of calls) expectValidCall(call, "get_weather");
      // The arguments stream as they are decoded, not in one piece at the end.
      expect(deltas).toBeGreaterThan(3 * calls.length);
    }, 60_000);

    it("a two-turn tool conversation: the assistant's tool_calls and the tool's result are accepted and rendered", async () => {
      const first = await client().chat.completions.create({ model: "tiny-llama", messages, tools, tool_choice: "required", temperature: 0 });
      const assistant = first.choices[0]!.message;
      // Each call the assistant made gets its result (greedy decoding may make several).
      const results = assistant.tool_calls!.map((call): ChatCompletionMessageParam => ({ role: "tool", tool_call_id: call.id, content: '{"temperature": 21}' }));
      const second = await client().chat.completions.create({
        model: "tiny-llama",
        messages: [...messages, assistant, ...results],
        tools,
        temperature: 0,
        max_completion_tokens: 12,
        tool_choice: "none",
      });
      expect(second.choices[0]!.message.role).toBe("assistant");
      expect(typeof second.choices[0]!.message.content).toBe("string");
      // The tool's result is in the prompt: the same conversation without it is shorter.
      const without = await client().chat.completions.create({ model: "tiny-llama", messages: [...messages, assistant], tools, tool_choice: "none", temperature: 0, max_completion_tokens: 1 });
      expect(second.usage!.prompt_tokens).toBeGreaterThan(without.usage!.prompt_tokens);
    }, 60_000);
  });
}

describeToolBehaviour("tools on the embedded engine (tiny model)", () => startEmbeddedEngine({ parallel: 2, ctxSize: 2048 }), /^call_[A-Za-z0-9]{24}$/);

/*
 * Skipped even where a llama-server is built, until node-llama-cpp bundles a llama.cpp without this
 * bug: on the tiny model (no chat template of its own: ChatML, which knows no tools) llama-server
 * constrains nothing and fails with `500 ... peg-native format`; under any tool-capable template it
 * primes the tool grammar with the template's generation prompt, tokenized by the model's
 * SentencePiece vocabulary, drops the first (space-prefixed) piece, and refuses every request with
 * `400 Failed to initialize samplers` (ggml-org/llama.cpp #23775, #22396, #23990; json_schema on a
 * template without a generation prompt passes: test/openai-structured-output.test.ts). Remove the
 * `LLAMA_TOOLS_BLOCKED_UPSTREAM` to run them against a newer build.
 */
const LLAMA_TOOLS_BLOCKED_UPSTREAM = true;
describe.skipIf(!llamaServerBuilt || LLAMA_TOOLS_BLOCKED_UPSTREAM)(`tools on llama-server (llamacpp profile${!llamaServerBuilt ? `: no llama-server at ${LLAMA_SERVER}, skipped; set HEARTH_LLAMA_SERVER` : ": skipped, llama.cpp's grammar prefill bug (ggml-org/llama.cpp #23775)"})`, () => {
  describeToolBehaviour("the same behaviour", () => startLlamaServerEngine({ threads: 1, "ctx-size": 4096, jinja: true }), /^\S+$/);
});

describe("tools on the embedded engine: parallel calls, auto, none and refusals", () => {
  let engine: Awaited<ReturnType<typeof startEmbeddedEngine>>;
  let openai: OpenAI;
  beforeAll(async () => {
    engine = await startEmbeddedEngine({ parallel: 2, ctxSize: 2048 });
    openai = new OpenAI({ baseURL: `${engine.base}/v1`, apiKey: "unused", maxRetries: 0 });
    idPattern = /^call_[A-Za-z0-9]{24}$/;
  }, 60_000);
  afterAll(async () => {
    await engine?.stop();
  });

  it("parallel_tool_calls: false makes one call where the same seed otherwise makes several", async () => {
    const seeded = async (seed: number, parallel?: boolean) =>
      (await openai.chat.completions.create({ model: "tiny-llama", messages, tools, tool_choice: "required", temperature: 1, seed, ...(parallel !== undefined && { parallel_tool_calls: parallel }) })).choices[0]!.message.tool_calls!;
    let seed = 1;
    while ((await seeded(seed)).length < 2) {
      seed++;
      expect(seed, "no seed up to 12 made parallel calls").toBeLessThan(12);
    }
    const single = await seeded(seed, false);
    expect(single).toHaveLength(1);
    expectValidCall(single[0]! as never);
  }, 120_000);

  it("streamed and not, the same seeded calls: names equal, arguments the same JSON values", async () => {
    let several = false;
    for (const seed of [21, 5]) {
      const request = { model: "tiny-llama", messages, tools, tool_choice: "required" as const, temperature: 1, seed };
      // Both at once, decoded in one batch: a seeded sequence does not depend on its neighbours.
      const [wholeOut, { calls }] = await Promise.all([openai.chat.completions.create(request), openai.chat.completions.create({ ...request, stream: true }).then(collectToolCalls)]);
      const whole = wholeOut.choices[0]!.message.tool_calls! as { function: { name: string; arguments: string } }[];
      expect(calls.map((c) => c.function.name)).toEqual(whole.map((c) => c.function.name));
      expect(calls.map((c) => JSON.parse(c.function.arguments))).toEqual(whole.map((c) => JSON.parse(c.function.arguments)));
      several ||= whole.length > 1;
    }
    expect(several, "some seed made parallel calls").toBe(true);
  }, 120_000);

  it('tool_choice "auto": either a valid call or a text answer, never anything in between', async () => {
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const out = await openai.chat.completions.create({ model: "tiny-llama", messages, tools, temperature: 1, seed, max_completion_tokens: 120 });
      const choice = out.choices[0]!;
      if (choice.message.tool_calls?.length) {
        expect(choice.finish_reason).toBe("tool_calls");
        for (const call of choice.message.tool_calls) expectValidCall(call as never);
      } else {
        expect(choice.message.content!.startsWith("{")).toBe(false);
      }
    }
  }, 120_000);

  it('tool_choice "none": a text answer', async () => {
    const out = await openai.chat.completions.create({ model: "tiny-llama", messages, tools, tool_choice: "none", temperature: 0, max_completion_tokens: 8 });
    expect(out.choices[0]!.message.tool_calls ?? []).toEqual([]);
    expect(out.choices[0]!.finish_reason).not.toBe("tool_calls");
  });


  it("refuses bad tools and choices with a 400 naming param", async () => {
    const create = (body: Record<string, unknown>) => refusal(openai.chat.completions.create({ model: "tiny-llama", messages, ...body } as never));
    expect(await create({ tools: [{ type: "function", function: { parameters: timeParams } }] })).toEqual({ status: 400, param: "tools[0].function.name" });
    expect(await create({ tools, tool_choice: { type: "function", function: { name: "nope" } } })).toEqual({ status: 400, param: "tool_choice.function.name" });
    expect(await create({ tool_choice: "required" })).toEqual({ status: 400, param: "tool_choice" });
    expect(await create({ tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { x: { type: "string", pattern: "a+" } } } } }] })).toEqual({
      status: 400,
      param: "tools[0].function.parameters.properties.x.pattern",
    });
    expect(await create({ messages: [...messages, { role: "tool", tool_call_id: "call_x", content: "1" }] })).toEqual({ status: 400, param: "messages[1].tool_call_id" });
    expect(await create({ messages: [...messages, { role: "tool", content: "1" }] })).toEqual({ status: 400, param: "messages[1].tool_call_id" });
  });
});
