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
import { addEmbeddingsRoute } from "./embeddings-route.ts";
import type { LlamaEmbedder } from "./llama-embedder.ts";
import { toolFunctions, toolPlan, type ToolPlan } from "./tool-calls.ts";
import { parseToolCalls, ToolCallSplitter, type ToolCall, type ToolCallDelta } from "./tool-call-stream.ts";
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
  /** Serves `/v1/embeddings` when given. */
  embedder?: LlamaEmbedder;
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

function toolCallChoice(calls: ToolCall[]) {
  return { index: 0, message: { role: "assistant", content: null, tool_calls: calls }, logprobs: null, finish_reason: "tool_calls" };
}

/** A piece of a call as OpenAI streams it: the first carries id, type and name; the rest, arguments. */
function toolCallChunk(delta: ToolCallDelta): object {
  const fn = { ...(delta.name !== undefined && { name: delta.name }), ...(delta.arguments !== undefined && { arguments: delta.arguments }) };
  const toolCall = { index: delta.index, ...(delta.id !== undefined && { id: delta.id, type: "function" }), function: fn };
  return { index: 0, delta: { tool_calls: [toolCall] }, logprobs: null, finish_reason: null };
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

/** The prompt is counted once, as OpenAI does for `n` choices; the completions add up. */
function usage(results: readonly GenerationResult[]) {
  const prompt = results[0]?.promptTokens ?? 0;
  const completion = results.reduce((sum, r) => sum + r.completionTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** `choice` as the `index`th choice (every shape builds its choices as index 0). */
function at(index: number, choice: object): object {
  return { ...choice, index };
}

function serverError(err: unknown, log: Log, c: Context): OpenAIErrorBody {
  log({ level: "error", msg: "generation failed", path: c.req.path, traceId: parseTraceparent(c.req.header("traceparent"))?.traceId, error: String(err instanceof Error ? (err.stack ?? err.message) : err) });
  const message = err instanceof Error ? err.message : String(err);
  return new OpenAiError(500, "server_error", `the engine failed: ${message}`).toBody();
}

/**
 * The OpenAI-compatible HTTP API of the embedded engine: `/v1/models`, `/v1/completions`,
 * `/v1/chat/completions`, `/v1/embeddings`, plus `/health` (the supervisor's readiness probe) and `/stats`.
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
    const tools = await toolPlan(body.tools, body.tool_choice, generator.grammars, body.parallel_tool_calls !== false);
    // One grammar constrains a generation: a call's, or the response format's.
    if (tools && body.response_format != null && body.response_format.type !== "text") {
      throw OpenAiError.invalidRequest('response_format together with tools is only supported with tool_choice "none"', "response_format");
    }
    // Tools are shown to the model even under "none" (as OpenAI does): a chat template renders the
    // conversation's earlier calls in its own format only when it is given the tools.
    const prompt = generator.chatPrompt(body.messages, tools?.functions ?? toolFunctions(body.tools).functions);
    const grammar = tools?.grammar ?? (await responseFormatGrammar(body.response_format, generator.grammars));
    const tokenBias = logitBias(generator.model, body.logit_bias);
    // Unset, a chat completion may run to the end of the context.
    return complete(c, chatShape, prompt, { ...samplingParams(body, body.max_completion_tokens ?? body.max_tokens ?? undefined), grammar, tokenBias }, body, tools);
  });

  if (deps.embedder) addEmbeddingsRoute(app, deps.embedder, servedModelName);

  async function complete(
    c: Context,
    shape: ChoiceShape,
    prompt: Prompt,
    params: SamplingParams,
    body: Pick<CompletionRequest, "stream" | "stream_options" | "n">,
    tools?: ToolPlan,
  ): Promise<Response> {
    const id = `${shape.idPrefix}-${randomAlnum(24)}`;
    const created = Math.floor(Date.now() / 1000);
    // `n` choices are `n` generations, each on its own sequence (batched together like separate
    // requests), each with its own seed so that a seeded request still gets different choices.
    const choiceParams = Array.from({ length: body.n ?? 1 }, (_, i): SamplingParams => (params.seed === undefined || i === 0 ? params : { ...params, seed: (params.seed + i) >>> 0 }));
    // One choice failing ends the others: the request fails as a whole.
    const failed = new AbortController();
    const generateAll = (
      signal: AbortSignal,
      onText?: (index: number, text: string, entries?: TokenLogprob[]) => void,
      onDone?: (index: number, result: GenerationResult) => void,
    ) =>
      Promise.all(
        choiceParams.map((p, i) =>
          generator.generate(prompt, p, { signal: AbortSignal.any([signal, failed.signal]), ...(onText && { onText: (text, entries) => onText(i, text, entries) }) }).then(
            (result) => {
              onDone?.(i, result);
              return result;
            },
            (err: unknown) => {
              failed.abort(err);
              throw err;
            },
          ),
        ),
      );

    if (!body.stream) {
      // The adapter aborts the request's signal when the client disconnects before the response.
      const results = await generateAll(c.req.raw.signal);
      const choices = results.map((result, i) => {
        const calls = tools && (tools.mode === "required" || result.text.startsWith("{")) ? parseToolCalls(result.text) : undefined;
        const logprobs = result.logprobs ? shape.logprobs(result.logprobs, 0) : null;
        return at(i, calls ? toolCallChoice(calls) : shape.whole(result.text, result.finishReason, logprobs));
      });
      return c.json({ id, object: shape.object, created, model: servedModelName, choices, usage: usage(results) });
    }

    // Fail with a status code while one can still be sent: a stream's 200 goes out at once.
    generator.checkPrompt(prompt);
    const includeUsage = body.stream_options?.include_usage === true;
    // As OpenAI does, every chunk carries `usage: null` when the last one will carry the usage.
    const chunk = (index: number, choice: object) => ({ id, object: shape.chunkObject, created, model: servedModelName, choices: [at(index, choice)], ...(includeUsage ? { usage: null } : {}) });
    const cancelled = new AbortController();
    return sseResponse({
      produce: async (send) => {
        const opening = shape.opening;
        if (opening) choiceParams.forEach((_, i) => send(chunk(i, opening)));
        const splitters = choiceParams.map(() => tools && new ToolCallSplitter(tools.mode));
        const offsets = choiceParams.map(() => 0); // of each choice's next piece in its completion
        const finish = (i: number, result: GenerationResult) => {
          const splitter = splitters[i];
          const rest = splitter?.finish(result.text);
          if (rest) {
            for (const delta of rest) send(chunk(i, toolCallChunk(delta)));
            send(chunk(i, shape.closing("tool_calls")));
            return;
          }
          // A call cut before its name was complete is sent as the text it is; one cut later has
          // streamed its deltas already, and ends with the generation's own reason ("length").
          if (splitter?.holdsCall && !splitter.callStarted && result.text !== "") send(chunk(i, shape.piece(result.text, result.logprobs ? shape.logprobs(result.logprobs, 0) : null)));
          send(chunk(i, shape.closing(result.finishReason)));
        };
        const results = await generateAll(
          // On a disconnect the adapter both aborts the request's signal and cancels the body;
          // either one stops the generation.
          AbortSignal.any([c.req.raw.signal, cancelled.signal]),
          (i, text, entries) => {
            const split = splitters[i]?.push(text) ?? { content: text, deltas: [] };
            for (const delta of split.deltas) send(chunk(i, toolCallChunk(delta)));
            const content = split.content;
            if (content === "") return;
            send(chunk(i, shape.piece(content, entries ? shape.logprobs(entries, offsets[i]!) : null)));
            offsets[i]! += content.length;
          },
          finish,
        );
        if (includeUsage) send({ id, object: shape.chunkObject, created, model: servedModelName, choices: [], usage: usage(results) });
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
