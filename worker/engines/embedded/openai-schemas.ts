import { z } from "zod";
import { OpenAiError } from "./openai-error.ts";
import { responseFormat } from "./response-format.ts";
import { assistantToolCall, tool, toolChoice } from "./tool-calls.ts";

/*
 * Request bodies of the OpenAI routes the embedded engine serves. Optional fields accept `null` as
 * well as absence, because common clients send `"stop": null`, `"seed": null`… for "unset". Fields
 * not named here are stripped, not refused: clients send many that do not change the output
 * (`user`, `metadata`, `store`…), and an OpenAI server must not fail them for it. A field that would
 * change the output is either honoured or named here and refused when it asks for anything.
 */

const stop = z
  .union([z.string().min(1), z.array(z.string().min(1)).max(4)], {
    error: "stop must be a non-empty string or an array of at most 4 non-empty strings",
  })
  .nullish();

const samplingFields = {
  /** Any value is accepted: one engine serves one model, and clients hard-code names. */
  model: z.string().nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  seed: z.number().int().nullish(),
  stop,
  /** Choices, each generated on its own sequence; more than the engine's `--parallel` wait for one. */
  n: z.number().int().min(1).max(16, "n is at most 16").nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  response_format: responseFormat,
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  /** vLLM's and llama-server's (llama.cpp's repeat penalty), beside OpenAI's two. */
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  /** vLLM's: -1 (or 0) is off. */
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  /** Token id (as a string) → bias added to its logit. */
  logit_bias: z.record(z.string(), z.number().min(-100).max(100)).nullish(),
};


export const completionRequest = z.object({
  prompt: z.union([z.string(), z.tuple([z.string()])], {
    error: "prompt must be a string or an array of one string",
  }),
  /** How many alternatives to list per token (OpenAI allows 5, vLLM 20); 0 lists the chosen token's only. */
  logprobs: z.number().int().min(0).max(20).nullish(),
  ...samplingFields,
});
export type CompletionRequest = z.output<typeof completionRequest>;

const textPart = z.object({ type: z.literal("text"), text: z.string() });
const content = z.union([z.string(), z.array(textPart)], {
  error: 'content must be a string or an array of {"type": "text", "text": ...} parts',
});
const chatMessage = z.discriminatedUnion("role", [
  // OpenAI's newer models call the system role "developer"; both mean the same to a chat template.
  z.object({ role: z.enum(["system", "developer", "user"]), content: content.nullish(), name: z.string().nullish() }),
  z.object({ role: z.literal("assistant"), content: content.nullish(), name: z.string().nullish(), tool_calls: z.array(assistantToolCall).nullish() }),
  z.object({ role: z.literal("tool"), content: content.nullish(), tool_call_id: z.string().min(1) }),
]);
export type ChatMessage = z.output<typeof chatMessage>;

export const chatCompletionRequest = z.object({
  messages: z.array(chatMessage).min(1),
  /** The chat API's newer name for `max_tokens`; it wins when both are sent. */
  max_completion_tokens: z.number().int().min(1).nullish(),
  tools: z.array(tool).nullish(),
  tool_choice: toolChoice,
  /** One call is made at most, which every value allows. */
  parallel_tool_calls: z.boolean().nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  ...samplingFields,
}).refine((body) => body.top_logprobs == null || body.logprobs === true, { message: "top_logprobs requires logprobs to be true", path: ["top_logprobs"] });
export type ChatCompletionRequest = z.output<typeof chatCompletionRequest>;

/** A message's text: content parts joined by newlines (as vLLM does); `null` content is empty. */
export function messageText(content: ChatMessage["content"]): string {
  if (content == null) return "";
  if (typeof content === "string") return content;
  return content.map((part) => part.text).join("\n");
}

/** `messages[0].content`: how OpenAI names a field in `param`. */
export function paramPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) out += typeof key === "number" ? `[${key}]` : `${out ? "." : ""}${String(key)}`;
  return out;
}

/**
 * Parses a raw request body as JSON and validates it with `schema`. Malformed JSON and schema
 * failures both become a 400 `invalid_request_error`; a schema failure names the first offending
 * field in `param` and every issue in the message.
 */
export function parseRequestBody<S extends z.ZodType>(schema: S, raw: string): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (err) {
    throw OpenAiError.invalidRequest(`the request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  const result = schema.safeParse(json);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const first = issues[0];
  const message = issues.map((issue) => `${paramPath(issue.path) || "body"}: ${issue.message}`).join("; ");
  throw OpenAiError.invalidRequest(message, first ? paramPath(first.path) || null : null, first?.code ?? null);
}
