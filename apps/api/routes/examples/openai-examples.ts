import { checkContext } from "../../../../core/policy/context-window.ts";
import { ApiError } from "../../api-error.ts";
import { openAIErrorOf } from "../../openai-error.ts";
import { RateLimitError } from "../../services/rate-limiter.ts";
import { insufficientScope, invalidField } from "../route-kit.ts";
import { AT, ENDPOINT_ID, MODEL_NAME } from "./example-ids.ts";

/*
 * Examples of the OpenAI-compatible routes: the engine's answers as vLLM gives them (the API relays
 * them as they are), and the errors in OpenAI's shape, made by the same function as `app.onError`'s.
 */

/** When the sync job of record-examples.ts started (s): the completion it made. */
const created = 1749047140;

export const chatCompletion = {
  id: "chatcmpl-8c1f0d3b9a2e4f7c9d6e5b4a3f2e1d0c",
  object: "chat.completion",
  created,
  model: MODEL_NAME,
  choices: [{ index: 0, message: { role: "assistant", content: "Hearth runs RunPod-style serverless workers on your own GPUs." }, logprobs: null, finish_reason: "stop" }],
  usage: { prompt_tokens: 24, completion_tokens: 14, total_tokens: 38 },
};

export const textCompletion = {
  id: "cmpl-4e2a9c7b1d3f5e8a0b6c4d2e9f1a3b5c",
  object: "text_completion",
  created,
  model: MODEL_NAME,
  choices: [{ index: 0, text: " on your own GPUs, with RunPod's API.", logprobs: null, finish_reason: "length" }],
  usage: { prompt_tokens: 9, completion_tokens: 16, total_tokens: 25 },
};

/** Server-sent events of `stream: true`, as the engine writes them. */
const sse = (chunks: object[]) => [...chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`), "data: [DONE]\n\n"].join("");
export const chatCompletionEvents = sse([
  { id: chatCompletion.id, object: "chat.completion.chunk", created, model: MODEL_NAME, choices: [{ index: 0, delta: { role: "assistant", content: "Hearth" }, logprobs: null, finish_reason: null }] },
  { id: chatCompletion.id, object: "chat.completion.chunk", created, model: MODEL_NAME, choices: [{ index: 0, delta: { content: " runs" }, logprobs: null, finish_reason: "stop" }] },
]);
export const textCompletionEvents = sse([
  { id: textCompletion.id, object: "text_completion", created, model: MODEL_NAME, choices: [{ index: 0, text: " on your", logprobs: null, finish_reason: null }] },
  { id: textCompletion.id, object: "text_completion", created, model: MODEL_NAME, choices: [{ index: 0, text: " own GPUs", logprobs: null, finish_reason: "length" }] },
]);

export const embeddingList = {
  object: "list",
  data: [{ object: "embedding", index: 0, embedding: [0.0182, -0.0473, 0.0061, 0.0325, -0.0118] }],
  model: "bge-m3",
  usage: { prompt_tokens: 8, total_tokens: 8 },
};

/** An engine endpoint's `/models`, answered from its spec (openai-routes.ts). */
export const modelList = { object: "list", data: [{ id: MODEL_NAME, object: "model", created: Math.floor(Date.parse(AT.endpointCreated) / 1000), owned_by: "hearth" }] };

const contextRefusal = checkContext(8192, { longestPromptTokens: 1200, maxTokens: 8000, maxTokensParam: "max_tokens" }, "messages")!;

/** The errors of these routes, as OpenAI clients read them. */
export const openAIErrors = {
  contextLength: openAIErrorOf(
    new ApiError(400, "context_length_exceeded", contextRefusal.message, [{ path: contextRefusal.param, message: `about ${contextRefusal.promptTokens + contextRefusal.maxTokens} tokens; the window is ${contextRefusal.window}` }]),
  ),
  invalidEmbedding: openAIErrorOf(invalidField("dimensions", "Too small: expected number to be >=1")),
  tooLarge: openAIErrorOf(new ApiError(413, "payload_too_large", "request body exceeds the limit of this operation (20 MB)")),
  tokenLimit: openAIErrorOf(new RateLimitError("tokens", "rate limit reached for tokens per minute: the tenant's limit is 100000, this request asks for about 9200; retry in 6 s", {})),
  queueFull: openAIErrorOf(new ApiError(429, "queue_full", "the endpoint's queue holds 1000 jobs, its limit (maxQueuedJobsPerEndpoint 1000); retry later")),
  unauthorized: openAIErrorOf(new ApiError(401, "unauthorized", "invalid API key")),
  missingKey: openAIErrorOf(new ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer <key>")),
  scope: (route: string) => openAIErrorOf(insufficientScope("read", "POST", `/v2/${ENDPOINT_ID}/openai/v1/${route}`)),
  notFound: openAIErrorOf(ApiError.notFound("endpoint")),
};
