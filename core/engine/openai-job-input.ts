import { z } from "zod";

/**
 * How a job's input becomes one request to an OpenAI-compatible engine, as RunPod's vLLM worker
 * reads it (runpod-contract.md §1.7):
 * - the passthrough `{openai_route, openai_input}`, which the OpenAI routes of the API send and
 *   whose output is the engine's own JSON (or its stream chunks);
 * - the worker's native `{prompt | messages, sampling_params, stream}`, whose output is the
 *   worker-vllm shape `{choices: [{tokens: [text]}], usage: {input, output}}`.
 * Pure: the worker's engine adapter does the I/O.
 */

/** Routes an engine is asked for; anything else is refused before it reaches the engine. */
export const OPENAI_ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"] as const;
export type OpenAIRoute = (typeof OPENAI_ROUTES)[number];

const passthroughInput = z.object({
  openai_route: z.enum(OPENAI_ROUTES),
  openai_input: z.record(z.string(), z.unknown()).optional(),
});

const message = z.object({ role: z.string().min(1), content: z.unknown() }).passthrough();

const nativeInput = z
  .object({
    prompt: z.string().optional(),
    messages: z.array(message).min(1).optional(),
    /** vLLM SamplingParams names (max_tokens, temperature, top_p, seed, stop, ...), passed to the engine as they are. */
    sampling_params: z.record(z.string(), z.unknown()).default({}),
    stream: z.boolean().default(false),
  })
  .refine((i) => (i.prompt === undefined) !== (i.messages === undefined), "give exactly one of prompt or messages");

export type EngineRequest =
  | { shape: "openai"; method: "GET"; route: "/v1/models"; stream: false }
  | {
      /** `openai`: relay the engine's JSON and chunks as they are; `tokens`: the worker-vllm shape. */
      shape: "openai" | "tokens";
      method: "POST";
      route: Exclude<OpenAIRoute, "/v1/models">;
      body: Record<string, unknown>;
      /** Whether the job's caller wants chunks (the engine is asked to stream whenever it can be measured). */
      stream: boolean;
      /** The caller asked for the usage chunk itself (`stream_options.include_usage`); else it is kept back. */
      callerWantsUsage: boolean;
    };

export type ParsedJobInput = { ok: true; request: EngineRequest } | { ok: false; error: string };

/**
 * Maps a job input to the engine request. Streaming requests always ask the engine for the usage
 * chunk (token counts for the job record); `servedModelName` fills a missing `model`.
 */
export function toEngineRequest(input: unknown, servedModelName: string): ParsedJobInput {
  if (isObject(input) && "openai_route" in input) {
    const parsed = passthroughInput.safeParse(input);
    if (!parsed.success) return { ok: false, error: `invalid OpenAI passthrough input: ${z.prettifyError(parsed.error)}` };
    const { openai_route: route, openai_input: body = {} } = parsed.data;
    if (route === "/v1/models") return { ok: true, request: { shape: "openai", method: "GET", route, stream: false } };
    // Embeddings have no stream: a stray `stream: true` reaches the engine as sent, but the answer is one JSON.
    const stream = route !== "/v1/embeddings" && body.stream === true;
    const callerWantsUsage = stream && isObject(body.stream_options) && body.stream_options.include_usage === true;
    const withModel = { ...body, model: typeof body.model === "string" && body.model !== "" ? body.model : servedModelName };
    return {
      ok: true,
      request: {
        shape: "openai",
        method: "POST",
        route,
        body: stream ? { ...withModel, stream_options: { ...(isObject(body.stream_options) ? body.stream_options : {}), include_usage: true } } : withModel,
        stream,
        callerWantsUsage,
      },
    };
  }

  const parsed = nativeInput.safeParse(input);
  if (!parsed.success) return { ok: false, error: `invalid input: ${z.prettifyError(parsed.error)}` };
  const { prompt, messages, sampling_params: sampling, stream } = parsed.data;
  // Always streamed from the engine, so time to first token is measured for non-streaming jobs too.
  const common = { ...sampling, model: servedModelName, stream: true, stream_options: { include_usage: true } };
  return {
    ok: true,
    request:
      messages !== undefined
        ? { shape: "tokens", method: "POST", route: "/v1/chat/completions", body: { ...common, messages }, stream, callerWantsUsage: false }
        : { shape: "tokens", method: "POST", route: "/v1/completions", body: { ...common, prompt }, stream, callerWantsUsage: false },
  };
}

/** The text a streamed OpenAI chunk adds: `choices[0].delta.content` (chat) or `choices[0].text` (completion). */
export function chunkText(chunk: unknown): string | undefined {
  if (!isObject(chunk) || !Array.isArray(chunk.choices)) return undefined;
  const choice: unknown = chunk.choices[0];
  if (!isObject(choice)) return undefined;
  if (typeof choice.text === "string") return choice.text;
  if (isObject(choice.delta) && typeof choice.delta.content === "string") return choice.delta.content;
  return undefined;
}

export interface OpenAIUsage {
  promptTokens: number;
  completionTokens: number;
}

/**
 * `usage` of an OpenAI response or final stream chunk, if it has one. An embeddings response's
 * usage has no `completion_tokens` (nothing is generated): its prompt tokens count, with 0 generated.
 */
export function usageOf(body: unknown): OpenAIUsage | undefined {
  if (!isObject(body) || !isObject(body.usage)) return undefined;
  const { prompt_tokens: p, completion_tokens: c } = body.usage;
  if (typeof p !== "number") return undefined;
  if (typeof c === "number") return { promptTokens: p, completionTokens: c };
  return body.object === "list" && Array.isArray(body.data) ? { promptTokens: p, completionTokens: 0 } : undefined;
}

/** worker-vllm's output shape: one chunk of text, with the token counts once they are known. */
export function tokensChunk(text: string, usage?: OpenAIUsage): Record<string, unknown> {
  return { choices: [{ tokens: text === "" ? [] : [text] }], ...(usage && { usage: { input: usage.promptTokens, output: usage.completionTokens } }) };
}

/** A JSON object (not an array, not null). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
