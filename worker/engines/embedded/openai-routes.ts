import type { Context } from "hono";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { randomAlnum } from "../../../core/ids/random-id.ts";
import { GenerationAbortedError, type GenerationResult, type LlamaGenerator, type SamplingParams } from "./llama-generator.ts";
import type { OpenAIErrorBody } from "../../../core/contracts/openai-error.ts";
import { OpenAiError } from "./openai-error.ts";
import { chatCompletionRequest, completionRequest, parseRequestBody, type ChatCompletionRequest, type CompletionRequest } from "./openai-schemas.ts";
import type { Prompt } from "./prompts.ts";
import { responseFormatGrammar } from "./response-format.ts";
import { logitBias } from "./logit-bias.ts";
import { chatLogprobs, completionLogprobs, type TokenLogprob } from "./logprobs.ts";
import { sseResponse } from "./sse-response.ts";
import { parseToolCall, ToolCallSplitter, toolPlan, type ToolCall, type ToolPlan } from "./tool-calls.ts";
import type { Log } from "../../../core/log/process-log.ts";
import { parseTraceparent } from "../../../core/trace/trace-context.ts";

export interface OpenAiAppDeps {
  generator: LlamaGenerator;
  /** The one model id this server lists and echoes in every response. */
  servedModelName: string;
  /** `created` of the listed model (seconds): when the engine loaded it. */
  loadedAtSeconds: number;
  /** The engine process's log; default none. */
  log?: Log;
}

type FinishReason = GenerationResult["finishReason"] | "tool_calls";

/** How one endpoint shapes its choices: `/v1/completions` carries `text`, the chat API `message`/`delta`. */
interface ChoiceShape {
  idPrefix: string;
  object: string;
  chunkObject: string;
  whole(text: string, finishReason: FinishReason, logprobs: object | null): object;
  /** The chunk a stream opens with, before any text (the chat API announces the role). */
  opening?: object;
  piece(text: string, logprobs: object | null): object;
  /** `logprobs` of a choice; `offset` is where the entries' text starts in the completion. */
  logprobs(entries: readonly TokenLogprob[], offset: number): object;
  closing(finishReason: FinishReason): object;
}

const completionShape: ChoiceShape = {
  idPrefix: "cmpl",
  object: "text_completion",
  chunkObject: "text_completion",
  whole: (text, finishReason, logprobs) => ({ index: 0, text, logprobs, finish_reason: finishReason }),
  piece: (text, logprobs) => ({ index: 0, text, logprobs, finish_reason: null }),
  logprobs: completionLogprobs,
  closing: (finishReason) => ({ index: 0, text: "", logprobs: null, finish_reason: finishReason }),
};

const chatShape: ChoiceShape = {
  idPrefix: "chatcmpl",
  object: "chat.completion",
  chunkObject: "chat.completion.chunk",
  whole: (content, finishReason, logprobs) => ({ index: 0, message: { role: "assistant", content }, logprobs, finish_reason: finishReason }),
  opening: { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null },
  piece: (content, logprobs) => ({ index: 0, delta: { content }, logprobs, finish_reason: null }),
  logprobs: (entries) => chatLogprobs(entries),
  closing: (finishReason) => ({ index: 0, delta: {}, logprobs: null, finish_reason: finishReason }),
};

function toolCallChoice(call: ToolCall) {
  return { index: 0, message: { role: "assistant", content: null, tool_calls: [call] }, logprobs: null, finish_reason: "tool_calls" };
}

/** A call as OpenAI streams it: id and name first, then the arguments (here in one piece, sent once they are complete). */
function toolCallDeltas(call: ToolCall): object[] {
  const delta = (toolCall: object) => ({ index: 0, delta: { tool_calls: [{ index: 0, ...toolCall }] }, logprobs: null, finish_reason: null });
  return [delta({ id: call.id, type: "function", function: { name: call.function.name, arguments: "" } }), delta({ function: { arguments: call.function.arguments } })];
}

/** Chat: `logprobs: true` with `top_logprobs` alternatives; completions: `logprobs` is the number of alternatives. */
function logprobsParam(body: CompletionRequest | ChatCompletionRequest): Pick<SamplingParams, "logprobs"> {
  if (typeof body.logprobs === "number") return { logprobs: { top: body.logprobs } };
  if (body.logprobs === true) return { logprobs: { top: "top_logprobs" in body ? (body.top_logprobs ?? 0) : 0 } };
  return {};
}

/** Sampling as OpenAI defines its defaults: temperature 1, top_p 1, no stop strings. */
function samplingParams(body: CompletionRequest | ChatCompletionRequest, maxTokens: number | undefined): SamplingParams {
  return {
    maxTokens,
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    // vLLM's -1 and llama.cpp's 0 both mean no top-k.
    topK: Math.max(0, body.top_k ?? 0),
    minP: body.min_p ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    presencePenalty: body.presence_penalty ?? 0,
    repetitionPenalty: body.repetition_penalty ?? 1,
    ...logprobsParam(body),
    // OpenAI takes any 64-bit integer; the sampler takes 32 bits.
    seed: body.seed == null ? undefined : Number(BigInt.asUintN(32, BigInt(body.seed))),
    stop: body.stop == null ? [] : typeof body.stop === "string" ? [body.stop] : body.stop,
  };
}

function usage(result: GenerationResult) {
  return { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens };
}

function serverError(err: unknown, log: Log, c: Context): OpenAIErrorBody {
  log({ level: "error", msg: "generation failed", path: c.req.path, traceId: parseTraceparent(c.req.header("traceparent"))?.traceId, error: String(err instanceof Error ? (err.stack ?? err.message) : err) });
  const message = err instanceof Error ? err.message : String(err);
  return new OpenAiError(500, "server_error", `the engine failed: ${message}`).toBody();
}

/**
 * The OpenAI-compatible HTTP API of the embedded engine: `/v1/models`, `/v1/completions`,
 * `/v1/chat/completions`, plus `/health` (the supervisor's readiness probe) and `/stats`.
 */
export function openAiApp(deps: OpenAiAppDeps): Hono {
  const { generator, servedModelName } = deps;
  const log = deps.log ?? (() => {});
  const app = new Hono();
  // Each request's trace (the worker's job span sent it as `traceparent`) in a debug line, and in the error line if it fails.
  app.use("/v1/*", async function requestLine(c, next) {
    const started = performance.now();
    await next();
    log({ level: "debug", msg: "request", method: c.req.method, path: c.req.path, status: c.res.status, ms: Math.round(performance.now() - started), traceId: parseTraceparent(c.req.header("traceparent"))?.traceId });
  });

  const modelCard = { id: servedModelName, object: "model", created: deps.loadedAtSeconds, owned_by: "hearth" };

  app.get("/health", (c) => c.json({ status: "ok" }));
  app.get("/stats", (c) => {
    const s = generator.stats();
    return c.json({ generated_tokens_total: s.generatedTokensTotal, active_requests: s.activeRequests, queued_requests: s.queuedRequests });
  });
  app.get("/v1/models", (c) => c.json({ object: "list", data: [modelCard] }));
  app.get("/v1/models/:model{.+}", (c) => {
    if (c.req.param("model") !== servedModelName) {
      throw new OpenAiError(404, "invalid_request_error", `The model '${c.req.param("model")}' does not exist`, "model", "model_not_found");
    }
    return c.json(modelCard);
  });

  app.post("/v1/completions", async (c) => {
    const body = parseRequestBody(completionRequest, await c.req.text());
    const prompt = generator.completionPrompt(typeof body.prompt === "string" ? body.prompt : body.prompt[0]);
    // OpenAI's legacy completions default to 16 tokens.
    const grammar = await responseFormatGrammar(body.response_format, generator.grammars);
    const tokenBias = logitBias(generator.model, body.logit_bias);
    return complete(c, completionShape, prompt, { ...samplingParams(body, body.max_tokens ?? 16), grammar, tokenBias }, body);
  });

  app.post("/v1/chat/completions", async (c) => {
    const body = parseRequestBody(chatCompletionRequest, await c.req.text());
    const tools = await toolPlan(body.tools, body.tool_choice, generator.grammars);
    // One grammar constrains a generation: a call's, or the response format's.
    if (tools && body.response_format != null && body.response_format.type !== "text") {
      throw OpenAiError.invalidRequest('response_format together with tools is only supported with tool_choice "none"', "response_format");
    }
    const prompt = generator.chatPrompt(body.messages, tools?.functions);
    const grammar = tools?.grammar ?? (await responseFormatGrammar(body.response_format, generator.grammars));
    const tokenBias = logitBias(generator.model, body.logit_bias);
    // Unset, a chat completion may run to the end of the context.
    return complete(c, chatShape, prompt, { ...samplingParams(body, body.max_completion_tokens ?? body.max_tokens ?? undefined), grammar, tokenBias }, body, tools);
  });

  async function complete(
    c: Context,
    shape: ChoiceShape,
    prompt: Prompt,
    params: SamplingParams,
    body: Pick<CompletionRequest, "stream" | "stream_options">,
    tools?: ToolPlan,
  ): Promise<Response> {
    const id = `${shape.idPrefix}-${randomAlnum(24)}`;
    const created = Math.floor(Date.now() / 1000);
    if (!body.stream) {
      // The adapter aborts the request's signal when the client disconnects before the response.
      const result = await generator.generate(prompt, params, { signal: c.req.raw.signal });
      const call = tools && (tools.mode === "required" || result.text.startsWith("{")) ? parseToolCall(result.text) : undefined;
      const logprobs = result.logprobs ? shape.logprobs(result.logprobs, 0) : null;
      const choices = [call ? toolCallChoice(call) : shape.whole(result.text, result.finishReason, logprobs)];
      return c.json({ id, object: shape.object, created, model: servedModelName, choices, usage: usage(result) });
    }

    // Fail with a status code while one can still be sent: a stream's 200 goes out at once.
    generator.checkPrompt(prompt);
    const includeUsage = body.stream_options?.include_usage === true;
    // As OpenAI does, every chunk carries `usage: null` when the last one will carry the usage.
    const chunk = (choices: object[]) => ({ id, object: shape.chunkObject, created, model: servedModelName, choices, ...(includeUsage ? { usage: null } : {}) });
    const cancelled = new AbortController();
    return sseResponse({
      produce: async (send) => {
        if (shape.opening) send(chunk([shape.opening]));
        const splitter = tools && new ToolCallSplitter(tools.mode);
        let offset = 0; // of the next piece's text in the completion
        const result = await generator.generate(prompt, params, {
          // On a disconnect the adapter both aborts the request's signal and cancels the body;
          // either one stops the generation.
          signal: AbortSignal.any([c.req.raw.signal, cancelled.signal]),
          onText: (text, entries) => {
            const content = splitter ? splitter.push(text) : text;
            if (content === "") return;
            send(chunk([shape.piece(content, entries ? shape.logprobs(entries, offset) : null)]));
            offset += content.length;
          },
        });
        const call = splitter?.holdsCall ? parseToolCall(result.text) : undefined;
        if (call) {
          for (const delta of toolCallDeltas(call)) send(chunk([delta]));
          send(chunk([shape.closing("tool_calls")]));
        } else {
          // A call cut by max_tokens is sent as the text it is.
          if (splitter?.holdsCall && result.text !== "") send(chunk([shape.piece(result.text, result.logprobs ? shape.logprobs(result.logprobs, 0) : null)]));
          send(chunk([shape.closing(result.finishReason)]));
        }
        if (includeUsage) send({ id, object: shape.chunkObject, created, model: servedModelName, choices: [], usage: usage(result) });
      },
      onCancel: () => cancelled.abort(new Error("the client stopped reading the stream")),
      errorEvent: (err) => {
        if (err instanceof GenerationAbortedError) return undefined; // nobody is reading
        return err instanceof OpenAiError ? err.toBody() : serverError(err, log, c);
      },
    });
  }

  app.notFound((c) =>
    c.json(new OpenAiError(404, "invalid_request_error", `Unknown request URL: ${c.req.method} ${c.req.path}`, null, "unknown_url").toBody(), 404),
  );
  app.onError((err, c) => {
    if (err instanceof OpenAiError) return c.json(err.toBody(), err.status);
    // The client is gone; this status is only seen in logs.
    if (err instanceof GenerationAbortedError) return new Response(null, { status: 499 });
    if (err instanceof HTTPException) return c.json(new OpenAiError(err.status, "invalid_request_error", err.message).toBody(), err.status);
    return c.json(serverError(err, log, c), 500);
  });
  return app;
}
