import { randomAlnum } from "../../../core/ids/random-id.ts";
import type { ChatModelFunctions, GbnfJsonSchema, LlamaGrammar } from "node-llama-cpp";
import { z } from "zod";
import type { GrammarFactory } from "./grammars.ts";
import { toGbnfJsonSchema } from "./json-schema-grammar.ts";
import { OpenAiError } from "./openai-error.ts";

/*
 * OpenAI function calling on the embedded engine, by grammar. A call is written by the model as one
 * JSON object `{"name": "<tool>", "arguments": {...}}` (the shape Hermes, Qwen and Llama 3.1 chat
 * templates teach their models), whose `arguments` the grammar constrains to the tool's parameter
 * schema. `required` and a named function constrain the whole output to a call. `auto` lets the
 * grammar choose at the first character: `{` starts a call, anything else is a text answer. That
 * is a choice the grammar enforces whatever the model, so it is reliable on the tiny gibberish
 * model too, which node-llama-cpp's own function calling is not (it waits for the model to write
 * the chat wrapper's call syntax and parses it afterwards). The one cost: under `auto`, a text
 * answer cannot begin with `{`.
 */

const functionName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "a function name must be 1 to 64 letters, digits, underscores or dashes");

export const tool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: functionName,
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
});
export type Tool = z.output<typeof tool>;

export const toolChoice = z
  .union([z.enum(["none", "auto", "required"]), z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) })], {
    error: 'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
  })
  .nullish();
export type ToolChoice = z.output<typeof toolChoice>;

/** A call as an assistant message carries it back in the conversation. */
export const assistantToolCall = z.object({
  id: z.string().min(1),
  type: z.literal("function"),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

/** A call in OpenAI's response shape. */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** How a request wants tools used: the grammar to decode with and how to read its output. */
export interface ToolPlan {
  /** `required` and named: every output is a call. `auto`: a call when the output starts with `{`. */
  mode: "auto" | "required";
  grammar: LlamaGrammar;
  /** The tools as node-llama-cpp's chat wrappers render them into the prompt. */
  functions: ChatModelFunctions;
}

/** The tools documented to the model (parameters translated, so the same checks apply) or none. */
export function toolFunctions(tools: readonly Tool[] | null | undefined): { functions: ChatModelFunctions; schemas: Map<string, GbnfJsonSchema> } {
  const schemas = new Map<string, GbnfJsonSchema>();
  const functions: Record<string, { description?: string; params?: GbnfJsonSchema }> = {};
  (tools ?? []).forEach((t, i) => {
    const { name, description, parameters } = t.function;
    if (schemas.has(name)) throw OpenAiError.invalidRequest(`tools[${i}].function.name: ${name} is declared twice`, `tools[${i}].function.name`);
    // OpenAI: no parameters means a function that takes none.
    const params = toGbnfJsonSchema(parameters ?? { type: "object", properties: {} }, `tools[${i}].function.parameters`);
    schemas.set(name, params);
    functions[name] = { ...(description != null && { description }), params };
  });
  return { functions, schemas };
}

/**
 * Checks `tools` and `tool_choice` and builds the plan, or returns undefined when no call may be
 * made (no tools, or `none`). Throws a 400 naming `param` for a bad parameter schema or a choice
 * naming no declared tool.
 */
export async function toolPlan(tools: readonly Tool[] | null | undefined, choice: ToolChoice, grammars: GrammarFactory): Promise<ToolPlan | undefined> {
  const { functions, schemas } = toolFunctions(tools);
  if (typeof choice === "object" && choice !== null && !schemas.has(choice.function.name)) {
    throw OpenAiError.invalidRequest(`tool_choice names the function ${JSON.stringify(choice.function.name)}, which is not in tools`, "tool_choice.function.name");
  }
  if (choice === "required" && schemas.size === 0) throw OpenAiError.invalidRequest('tool_choice "required" needs at least one tool', "tool_choice");
  if (schemas.size === 0 || choice === "none") return undefined;

  const allowed = typeof choice === "object" && choice !== null ? [choice.function.name] : [...schemas.keys()];
  const call: GbnfJsonSchema = {
    oneOf: allowed.map((name) => ({
      type: "object",
      properties: { name: { const: name }, arguments: schemas.get(name)! },
      required: ["name", "arguments"],
    })),
  } as GbnfJsonSchema;
  const mode = choice == null || choice === "auto" ? "auto" : "required";
  const callGbnf = () => grammars.jsonSchemaGbnf(call);
  const grammar =
    mode === "required"
      ? await grammars.gbnf(`call:${JSON.stringify(call)}`, callGbnf)
      : await grammars.gbnf(`auto:${JSON.stringify(call)}`, async () => {
          // The call's grammar under another name, and beside it a text answer that does not start with `{`.
          const gbnf = await callGbnf();
          if (!/^root ::= /m.test(gbnf)) throw new Error("node-llama-cpp's JSON grammar has no root rule");
          return `root ::= tool-call | text-answer\ntext-answer ::= [^{\\x00] [^\\x00]*\n${gbnf.replace(/^root ::= /m, "tool-call ::= ")}`;
        });
  return { mode, grammar, functions };
}

/**
 * Reads a tool call from a finished output: undefined when the output is a text answer (under
 * `auto`) or was cut before the call's JSON ended (finish_reason "length").
 */
export function parseToolCall(text: string): ToolCall | undefined {
  if (!text.trimStart().startsWith("{")) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const call = z.object({ name: z.string(), arguments: z.unknown() }).safeParse(value);
  if (!call.success) return undefined;
  return { id: `call_${randomAlnum(24)}`, type: "function", function: { name: call.data.name, arguments: JSON.stringify(call.data.arguments) } };
}

/** The start of a call as the grammar writes it, up to where the arguments' value begins. */
const CALL_HEAD = /^\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*/;
/** What may still close the call object after the arguments: held back until the end. */
const CALL_TAIL = /\s*(?:\}\s*)?$/;

/** A piece of a streamed call: its id and name once known, then fragments of its arguments' JSON text. */
export interface ToolCallDelta {
  id?: string;
  name?: string;
  arguments?: string;
}

/**
 * Splits a streamed output into text to send as `delta.content` at once and a tool call streamed as
 * OpenAI does: id and name as soon as the grammar has written them, then the arguments' JSON text
 * as it is decoded. Under `auto` the first character decides (the grammar allows `{` only as a
 * call's start); under `required` all of it is the call. The fragments join into the arguments'
 * JSON text as the model wrote it (whitespace included), which parses to the same value.
 */
export class ToolCallSplitter {
  private kind: "text" | "call" | undefined;
  private text = "";
  /** Where the arguments' value starts in `text`, once the call's head is complete. */
  private argsStart = -1;
  private sentTo = 0;

  constructor(mode: ToolPlan["mode"]) {
    if (mode === "required") this.kind = "call";
  }

  /** `content` to send now, and the call's deltas that `piece` completed. */
  push(piece: string): { content: string; deltas: ToolCallDelta[] } {
    if (this.kind === undefined && piece !== "") this.kind = piece.startsWith("{") ? "call" : "text";
    if (this.kind !== "call") return { content: piece, deltas: [] };
    this.text += piece;
    const deltas: ToolCallDelta[] = [];
    if (this.argsStart < 0) {
      const head = CALL_HEAD.exec(this.text);
      if (!head) return { content: "", deltas };
      deltas.push({ id: `call_${randomAlnum(24)}`, name: JSON.parse(head[1]!) as string, arguments: "" });
      this.argsStart = this.sentTo = head[0].length;
    }
    const safeEnd = this.text.length - (CALL_TAIL.exec(this.text.slice(this.sentTo))?.[0].length ?? 0);
    if (safeEnd > this.sentTo) {
      deltas.push({ arguments: this.text.slice(this.sentTo, safeEnd) });
      this.sentTo = safeEnd;
    }
    return { content: "", deltas };
  }

  /** Whether the output is a call, whose text went out as deltas, not content. */
  get holdsCall(): boolean {
    return this.kind === "call";
  }

  /** Whether the call's id and name went out already. */
  get callStarted(): boolean {
    return this.argsStart >= 0;
  }

  /**
   * At the end: the rest of the arguments (without the call object's closing brace), or
   * undefined when the output is not a complete call (cut by max_tokens or a stop string).
   */
  finish(output: string): ToolCallDelta[] | undefined {
    if (!this.callStarted || parseToolCall(output) === undefined) return undefined;
    const body = output.slice(0, output.length - (/\s*\}\s*$/.exec(output)?.[0].length ?? 0));
    return body.length > this.sentTo ? [{ arguments: body.slice(this.sentTo) }] : [];
  }
}
