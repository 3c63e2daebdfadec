import type { ChatModelFunctions, GbnfJsonSchema, LlamaGrammar } from "node-llama-cpp";
import { z } from "zod";
import type { GrammarFactory } from "./grammars.ts";
import { toGbnfJsonSchema } from "./json-schema-grammar.ts";
import { OpenAiError } from "./openai-error.ts";

/*
 * OpenAI function calling on the embedded engine, by grammar. A call is written by the model as one
 * JSON object `{"name": "<tool>", "arguments": {...}}` (the shape Hermes, Qwen and Llama 3.1 chat
 * templates teach their models), whose `arguments` the grammar constrains to the tool's parameter
 * schema; parallel calls are such objects one per line, up to MAX_CALLS_PER_TURN (one when the
 * request sets `parallel_tool_calls: false`). Reading them back: tool-call-stream.ts.
 * `required` and a named function constrain the whole output to calls. `auto` lets the
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

/** Calls one turn may make when `parallel_tool_calls` is not false (a bound the grammar enforces: a random model would otherwise call until max_tokens). */
export const MAX_CALLS_PER_TURN = 8;

/** `root ::= <the JSON value> <node-llama-cpp's end: four newlines, then any>`. */
const ROOT_RULE = /^root ::= (.*?) ("\\n\\n\\n\\n" \[\\n\]\*)$/m;

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
export async function toolPlan(tools: readonly Tool[] | null | undefined, choice: ToolChoice, grammars: GrammarFactory, parallel = true): Promise<ToolPlan | undefined> {
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
  const maxCalls = parallel ? MAX_CALLS_PER_TURN : 1;
  const gbnf = async () => {
    // node-llama-cpp's grammar is `root ::= <call> <end>`: the call becomes a rule of its own, repeated.
    const generated = await grammars.jsonSchemaGbnf(call);
    const root = ROOT_RULE.exec(generated);
    if (!root) throw new Error("node-llama-cpp's JSON grammar has no root rule of the expected shape");
    const rules = generated.replace(ROOT_RULE, `tool-call ::= ${root[1]}`);
    const calls = `tool-calls ::= tool-call${maxCalls > 1 ? ` ("\\n" tool-call){0,${maxCalls - 1}}` : ""} ${root[2]}`;
    // Under auto, beside the calls a text answer that does not start with `{`.
    const top = mode === "required" ? "root ::= tool-calls" : "root ::= tool-calls | text-answer\ntext-answer ::= [^{\\x00] [^\\x00]*";
    return `${top}\n${calls}\n${rules}`;
  };
  const grammar = await grammars.gbnf(`${mode}:${maxCalls}:${JSON.stringify(call)}`, gbnf);
  return { mode, grammar, functions };
}

