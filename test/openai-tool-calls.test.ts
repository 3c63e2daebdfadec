import { Ajv } from "ajv";
import OpenAI from "openai";
import type { ChatCompletionMessageParam, ChatCompletionTool } from "openai/resources/chat/completions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startEmbeddedEngine, type EmbeddedEngineProcess } from "./support/embedded-engine-process.ts";

/*
 * Function calling on the embedded engine through the real openai client, on the tiny gibberish
 * model: the grammar makes every call name a declared tool and its arguments validate against the
 * tool's parameter schema, whatever the model would write.
 */

let engine: EmbeddedEngineProcess;
let openai: OpenAI;

beforeAll(async () => {
  engine = await startEmbeddedEngine({ parallel: 2, ctxSize: 2048 });
  openai = new OpenAI({ baseURL: `${engine.base}/v1`, apiKey: "unused", maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await engine?.stop();
});

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

function expectValidCall(call: { id: string; type: string; function: { name: string; arguments: string } }, name?: string): void {
  expect(call.type).toBe("function");
  expect(call.id).toMatch(/^call_/);
  if (name) expect(call.function.name).toBe(name);
  const validate = validators[call.function.name];
  expect(validate, call.function.name).toBeDefined();
  expect(validate!(JSON.parse(call.function.arguments)), call.function.arguments).toBe(true);
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

describe("tools on the embedded engine (tiny model)", () => {
  it('tool_choice "required": a call to a declared tool whose arguments validate, across sampled outputs', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const out = await openai.chat.completions.create({ model: "tiny-llama", messages, tools, tool_choice: "required", temperature: 1, seed });
      const choice = out.choices[0]!;
      expect(choice.finish_reason).toBe("tool_calls");
      expect(choice.message.content).toBeNull();
      expect(choice.message.tool_calls).toHaveLength(1);
      expectValidCall(choice.message.tool_calls![0]! as never);
    }
  }, 120_000);

  it("a named function, streamed: delta.tool_calls chunks with index build a call whose arguments validate", async () => {
    const stream = await openai.chat.completions.create({
      model: "tiny-llama",
      messages,
      tools,
      tool_choice: { type: "function", function: { name: "get_weather" } },
      temperature: 1,
      seed: 11,
      stream: true,
    });
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
        expect(d.index).toBe(0);
        calls[d.index] ??= { id: d.id!, type: d.type!, function: { name: d.function!.name!, arguments: "" } };
        calls[d.index]!.function.arguments += d.function?.arguments ?? "";
      }
      finish = choice.finish_reason ?? finish;
    }
    expect(content).toBe("");
    expect(finish).toBe("tool_calls");
    expect(calls).toHaveLength(1);
    expectValidCall(calls[0]!, "get_weather");
    // The arguments stream as they are decoded, not in one piece at the end.
    expect(deltas).toBeGreaterThan(3);
  }, 60_000);

  it("streamed and not, the same seeded call: names equal, arguments the same JSON value", async () => {
    for (const seed of [21, 22, 23]) {
      const request = { model: "tiny-llama", messages, tools, tool_choice: "required" as const, temperature: 1, seed };
      const whole = (await openai.chat.completions.create(request)).choices[0]!.message.tool_calls![0]! as { function: { name: string; arguments: string } };
      let name = "";
      let args = "";
      for await (const chunk of await openai.chat.completions.create({ ...request, stream: true })) {
        for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
          name += d.function?.name ?? "";
          args += d.function?.arguments ?? "";
        }
      }
      expect(name).toBe(whole.function.name);
      expect(JSON.parse(args)).toEqual(JSON.parse(whole.function.arguments));
    }
  }, 60_000);

  it('tool_choice "auto": either a valid call or a text answer, never anything in between', async () => {
    const kinds = new Set<string>();
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const out = await openai.chat.completions.create({ model: "tiny-llama", messages, tools, temperature: 1, seed, max_completion_tokens: 120 });
      const choice = out.choices[0]!;
      if (choice.message.tool_calls?.length) {
        expect(choice.finish_reason).toBe("tool_calls");
        expectValidCall(choice.message.tool_calls[0]! as never);
        kinds.add("call");
      } else {
        expect(choice.message.content!.startsWith("{")).toBe(false);
        kinds.add("text");
      }
    }
    expect(kinds.size).toBeGreaterThan(0);
  }, 120_000);

  it('tool_choice "none": a text answer', async () => {
    const out = await openai.chat.completions.create({ model: "tiny-llama", messages, tools, tool_choice: "none", temperature: 0, max_completion_tokens: 8 });
    expect(out.choices[0]!.message.tool_calls ?? []).toEqual([]);
    expect(out.choices[0]!.finish_reason).not.toBe("tool_calls");
  });

  it("a two-turn tool conversation: the assistant's tool_calls and the tool's result are accepted and rendered", async () => {
    const first = await openai.chat.completions.create({ model: "tiny-llama", messages, tools, tool_choice: "required", temperature: 0 });
    const assistant = first.choices[0]!.message;
    const call = assistant.tool_calls![0]! as { id: string; function: { name: string; arguments: string } };
    const second = await openai.chat.completions.create({
      model: "tiny-llama",
      messages: [...messages, assistant, { role: "tool", tool_call_id: call.id, content: '{"temperature": 21}' }],
      tools,
      temperature: 0,
      max_completion_tokens: 12,
      tool_choice: "none",
    });
    expect(second.choices[0]!.message.role).toBe("assistant");
    expect(typeof second.choices[0]!.message.content).toBe("string");
    // The tool's result is in the prompt: the same conversation without it is shorter.
    const without = await openai.chat.completions.create({ model: "tiny-llama", messages: [...messages, assistant], tools, tool_choice: "none", temperature: 0, max_completion_tokens: 1 });
    expect(second.usage!.prompt_tokens).toBeGreaterThan(without.usage!.prompt_tokens);
  }, 60_000);

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
