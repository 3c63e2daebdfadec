import { EMBEDDED_DEFAULT_CTX_SIZE } from "../engine/engine-profiles.ts";

/** What of an endpoint's engine spec decides its context window. */
export interface EngineWindowSpec {
  kind: string;
  profile?: string;
  args?: Record<string, string | number | boolean>;
}

const positiveInt = (v: unknown): number | undefined => (typeof v === "number" && Number.isSafeInteger(v) && v > 0 ? v : undefined);

/**
 * Tokens one request may hold (prompt + completion) on an endpoint, from its engine spec, or
 * undefined when the spec does not say (the model's own config decides, which the API cannot read):
 * then the engine's own refusal stands. vLLM `max-model-len`, SGLang `context-length`, TensorRT-LLM
 * `max_seq_len`, llama.cpp `ctx-size` (0 = the model's: unknown), the embedded engine's `ctx-size`
 * or its default 2048. llama.cpp's `ctx-size` is shared by its slots in older builds (each gets
 * ctx-size / parallel); the whole size is taken here so nothing the engine would run is refused.
 */
export function contextWindow(engine: EngineWindowSpec): number | undefined {
  if (engine.kind !== "openai") return undefined;
  const args = engine.args ?? {};
  switch (engine.profile) {
    case "vllm":
      return positiveInt(args["max-model-len"]);
    case "sglang":
      return positiveInt(args["context-length"]);
    case "trtllm":
      return positiveInt(args["max_seq_len"]);
    case "llamacpp":
      return positiveInt(args["ctx-size"]);
    case "embedded":
      return positiveInt(args["ctx-size"]) ?? EMBEDDED_DEFAULT_CTX_SIZE;
    default:
      return undefined;
  }
}

export interface ContextRefusal {
  window: number;
  promptTokens: number;
  maxTokens: number;
  /** The request parameter to name: `max_tokens` when the prompt alone fits, else `messages` / `prompt`. */
  param: string;
  message: string;
}

/**
 * Refuses a request whose estimated prompt + asked completion exceed the window, in OpenAI's words
 * (its `context_length_exceeded` message); undefined when it fits or the window is unknown.
 */
export function checkContext(window: number | undefined, est: { longestPromptTokens: number; maxTokens: number; maxTokensParam: string | null }, promptParam: string): ContextRefusal | undefined {
  if (window === undefined) return undefined;
  const total = est.longestPromptTokens + est.maxTokens;
  if (total <= window) return undefined;
  const param = est.longestPromptTokens <= window && est.maxTokensParam !== null ? est.maxTokensParam : promptParam;
  const message =
    `This model's maximum context length is ${window} tokens. However, you requested about ${total} tokens ` +
    `(about ${est.longestPromptTokens} in the ${promptParam}, ${est.maxTokens} for the completion; prompt tokens are estimated as UTF-8 bytes / 4). ` +
    `Please reduce the length of the ${promptParam} or completion.`;
  return { window, promptTokens: est.longestPromptTokens, maxTokens: est.maxTokens, param, message };
}
