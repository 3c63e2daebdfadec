import { randomInt } from "node:crypto";
import { getLlama, LlamaCompletion, type ChatModelFunctions, type ChatWrapper, type Llama, type LlamaContext, type LlamaContextSequence, type LlamaGrammar, type LlamaModel, type TokenBias } from "node-llama-cpp";
import { FifoPool } from "./fifo-pool.ts";
import { GrammarFactory, JSON_GRAMMAR_END } from "./grammars.ts";
import { LogprobRecorder, type TokenLogprob } from "./logprobs.ts";
import { EngineClosingError, OpenAiError } from "./openai-error.ts";
import type { ChatMessage } from "./openai-schemas.ts";
import { beginningToken, chatPrompt, chatWrapperFor, completionPrompt, type Prompt } from "./prompts.ts";
import { StopStringMatcher } from "./stop-strings.ts";

export interface LlamaGeneratorOptions {
  /** Path of the GGUF model file. */
  modelPath: string;
  /** Requests decoded at once, each on its own context sequence; more wait in a FIFO. */
  parallel: number;
  /** Tokens of context per sequence (prompt and completion together), not split among sequences as llama-server's `-c` is. */
  contextSize: number;
  /** CPU threads for evaluation. Default: node-llama-cpp's choice for this machine. */
  threads?: number;
  /**
   * The binding, already being loaded with `llamaOptions(threads)` (the engine process starts it
   * before its own HTTP modules load: see main.ts). Default: loaded here.
   */
  llama?: Promise<Llama>;
}

/** How the binding is loaded: prebuilt CPU binaries only; an engine must never download or compile anything at start. */
export function llamaOptions(threads: number | undefined): { gpu: false; build: "never"; maxThreads?: number } {
  // Unset, node-llama-cpp's thread budget is max(math cores, 4).
  return { gpu: false, build: "never", ...(threads ? { maxThreads: threads } : {}) };
}

export interface SamplingParams {
  /** Most tokens to generate. Default: until the sequence's context is full. */
  maxTokens?: number;
  /** 0 is greedy decoding. */
  temperature: number;
  topP: number;
  /** Sample among the `topK` likeliest tokens only; 0: all of them. */
  topK: number;
  /** Drop tokens less likely than `minP` times the likeliest one; 0: none. */
  minP: number;
  /** OpenAI's: subtracted from a token's logit once per time it was generated. */
  frequencyPenalty: number;
  /** OpenAI's: subtracted from a token's logit once it was generated at all. */
  presencePenalty: number;
  /** vLLM's and llama.cpp's: a generated token's logit divided by it (multiplied when negative); 1: off. */
  repetitionPenalty: number;
  /** Seed of the sampler. Default: a random one per request. */
  seed?: number;
  /** Strings that end the completion; the text stops before them. */
  stop: readonly string[];
  /** Constrains every sampled token (structured output, tool calls); a JSON grammar's end is cut from the text. */
  grammar?: LlamaGrammar;
  /** Record each token's log probability and this many likeliest alternatives (0–20). */
  logprobs?: { top: number };
  /** Added to tokens' logits (OpenAI's `logit_bias`). */
  tokenBias?: TokenBias;
}

export interface GenerationResult {
  text: string;
  finishReason: "stop" | "length";
  /** Tokens of the prompt as evaluated (the beginning-of-sequence token included). */
  promptTokens: number;
  /** Tokens the engine sampled for this request, a stop string's included. */
  completionTokens: number;
  /** With `params.logprobs`: the output's tokens with their log probabilities. */
  logprobs?: TokenLogprob[];
}

export interface GenerationStats {
  /** Tokens sampled by the engine since it started, over all requests (aborted ones included). */
  generatedTokensTotal: number;
  /** Requests holding a sequence now. */
  activeRequests: number;
  /** Requests waiting for a free sequence. */
  queuedRequests: number;
}

/**
 * The penalties as node-llama-cpp applies them: on the tokens this request generated (OpenAI's
 * frequency and presence penalties count those; vLLM's repetition penalty also counts the
 * prompt's, which node-llama-cpp's completion does not). All off (OpenAI's default): none.
 */
function repeatPenalty(params: SamplingParams, contextSize: number) {
  if (params.frequencyPenalty === 0 && params.presencePenalty === 0 && params.repetitionPenalty === 1) return false as const;
  return {
    // Every generated token, not node-llama-cpp's last 64: OpenAI counts the whole completion.
    lastTokens: Math.min(params.maxTokens ?? contextSize, contextSize),
    penalizeNewLine: true,
    penalty: params.repetitionPenalty,
    frequencyPenalty: params.frequencyPenalty,
    presencePenalty: params.presencePenalty,
  };
}

/** The request's own signal aborted (its client went away) before the generation ended. */
export class GenerationAbortedError extends Error {
  readonly code = "GENERATION_ABORTED";
}

/**
 * One model, one context with `parallel` sequences, and a FIFO of requests waiting for a sequence.
 * Concurrent generations each decode on their own sequence; node-llama-cpp gathers the tokens the
 * sequences want evaluated into shared batches (continuous batching), so they advance together,
 * one token each per batch, instead of taking turns.
 */
export class LlamaGenerator {
  private readonly pool: FifoPool<LlamaContextSequence>;
  private closing = false;
  /** Each generation in progress, with the controller that ends it. */
  private readonly running = new Map<Promise<unknown>, AbortController>();
  private readonly sequences: LlamaContextSequence[];
  readonly chatWrapper: ChatWrapper;
  readonly grammars: GrammarFactory;

  /** Loads the model and creates its context; rejects when the file is not a model this build can run. */
  static async load(options: LlamaGeneratorOptions): Promise<LlamaGenerator> {
    const llama = await (options.llama ?? getLlama(llamaOptions(options.threads)));
    try {
      const model = await llama.loadModel({ modelPath: options.modelPath });
      const context = await model.createContext({
        sequences: options.parallel,
        contextSize: options.contextSize,
        ...(options.threads ? { threads: options.threads } : {}),
      });
      return new LlamaGenerator(llama, model, context);
    } catch (err) {
      await llama.dispose();
      throw err;
    }
  }

  private constructor(
    private readonly llama: Llama,
    readonly model: LlamaModel,
    private readonly context: LlamaContext,
  ) {
    this.sequences = Array.from({ length: context.totalSequences }, () => context.getSequence());
    this.pool = new FifoPool(this.sequences);
    this.chatWrapper = chatWrapperFor(model);
    this.grammars = new GrammarFactory(llama);
  }

  /** Tokens of context each request has (llama.cpp may round the requested size up). */
  get contextSize(): number {
    return this.context.contextSize;
  }

  completionPrompt(text: string): Prompt {
    return completionPrompt(this.model, text);
  }

  chatPrompt(messages: readonly ChatMessage[], functions?: ChatModelFunctions): Prompt {
    return chatPrompt(this.model, this.chatWrapper, messages, functions);
  }

  stats(): GenerationStats {
    return {
      generatedTokensTotal: this.sequences.reduce((sum, s) => sum + s.tokenMeter.usedOutputTokens, 0),
      activeRequests: this.pool.inUse,
      queuedRequests: this.pool.waiting,
    };
  }

  /**
   * Waits for a free sequence, then generates a completion of `prompt`, calling `onText` with each
   * piece of text as soon as it is decoded. Text that might be the start of a stop string is held
   * back until it is known not to be one.
   *
   * Rejects with a 400 `OpenAiError` when the prompt leaves no room in the context, with
   * `GenerationAbortedError` when `signal` aborts (decoding stops at the next token and the
   * sequence goes back to the pool), and with `EngineClosingError` when the engine closes meanwhile.
   */
  generate(prompt: Prompt, params: SamplingParams, options: { signal: AbortSignal; onText?: (text: string, logprobs?: TokenLogprob[]) => void }): Promise<GenerationResult> {
    // One controller ends the generation for every reason (client gone, stop string, close). Not
    // `AbortSignal.any` over an engine-wide "closing" signal: that would attach every request ever
    // made to one signal living as long as the engine; this listener goes when the request does.
    const controller = new AbortController();
    const forward = () => controller.abort(options.signal.reason);
    if (options.signal.aborted) forward();
    else options.signal.addEventListener("abort", forward, { once: true });
    const run = this.run(prompt, params, { ...options, controller });
    this.running.set(run, controller);
    void run
      .catch(() => {})
      .finally(() => {
        this.running.delete(run);
        options.signal.removeEventListener("abort", forward);
      });
    return run;
  }

  /** Refuses new requests, aborts running and queued ones, waits for them to stop, and frees the model. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const controller of this.running.values()) controller.abort(new EngineClosingError());
    this.pool.close(new EngineClosingError());
    await Promise.allSettled([...this.running.keys()]);
    await this.context.dispose();
    await this.model.dispose();
    await this.llama.dispose();
  }

  /**
   * Throws what `generate` would reject with at once: a 503 once closing, a 400 for a prompt that
   * leaves no room in the context. A stream checks this before it sends its 200.
   */
  checkPrompt(prompt: Prompt): void {
    if (this.closing) throw new EngineClosingError();
    if (prompt.tokens.length === 0) throw OpenAiError.invalidRequest(`${prompt.field} must not be empty`, prompt.field);
    // At least one token of the context must be left for the completion.
    if (prompt.tokens.length >= this.contextSize) {
      throw OpenAiError.invalidRequest(
        `This model's maximum context length is ${this.contextSize} tokens. However, your ${prompt.field} resulted in ${prompt.tokens.length} tokens, ` +
          `leaving no room for the completion. Please reduce the length of the ${prompt.field}.`,
        prompt.field,
        "context_length_exceeded",
      );
    }
  }

  private async run(
    prompt: Prompt,
    params: SamplingParams,
    options: { signal: AbortSignal; controller: AbortController; onText?: (text: string, logprobs?: TokenLogprob[]) => void },
  ): Promise<GenerationResult> {
    this.checkPrompt(prompt);
    const { signal } = options.controller;
    // LlamaCompletion puts the beginning token in front of its input itself.
    const first = beginningToken(this.model);
    const input = first !== null && prompt.tokens[0] === first ? prompt.tokens.slice(1) : prompt.tokens;

    // A JSON grammar's end is matched here too, so that its newlines are never sent as text.
    const matcher = new StopStringMatcher([...params.stop, ...prompt.formatStopStrings, ...(params.grammar ? [JSON_GRAMMAR_END] : [])]);
    let sequence: LlamaContextSequence | undefined;
    try {
      // Among free sequences, the one already holding the longest prefix of this prompt in its KV
      // cache (a chat's previous turn): LlamaCompletion then evaluates only the rest.
      sequence = await this.pool.acquire(signal, (s) => s.compareContextTokens(prompt.tokens).firstDifferentIndex);
      const recorder = params.logprobs && new LogprobRecorder(this.model, params.logprobs.top);
      let sentChars = 0;
      const send = (text: string) => {
        sentChars += text.length;
        options.onText?.(text, recorder?.take(sentChars));
      };
      const completion = new LlamaCompletion({ contextSequence: recorder ? recorder.recording(sequence) : sequence });
      const outputBefore = sequence.tokenMeter.usedOutputTokens;
      try {
        const { metadata } = await completion.generateCompletionWithMeta(input, {
          maxTokens: params.maxTokens,
          temperature: params.temperature,
          topP: params.topP,
          // Passed even when 0: node-llama-cpp's default of 40 would narrow every sample, and OpenAI has no top-k.
          topK: params.topK,
          minP: params.minP,
          // Without a seed node-llama-cpp seeds with the current second: two requests in the same
          // second would then sample the same text.
          seed: params.seed ?? randomInt(2 ** 32),
          repeatPenalty: repeatPenalty(params, this.contextSize),
          customStopTriggers: prompt.formatStopTokens,
          ...(params.grammar && { grammar: params.grammar }),
          ...(params.tokenBias && { tokenBias: params.tokenBias }),
          onTextChunk: (text) => {
            const safe = matcher.push(text);
            if (safe !== "") send(safe);
            if (matcher.stopped) options.controller.abort();
          },
          // Every end through the signal returns what was generated; `run` then tells them apart.
          signal,
          stopOnAbortSignal: true,
          // Stop at the end of the context with finish_reason "length" (as llama-server does)
          // instead of silently dropping the start of the prompt to make room.
          disableContextShift: true,
          contextShiftSize: 0,
        });
        if (signal.aborted && !matcher.stopped) throw signal.reason;
        if (!matcher.stopped) {
          const rest = matcher.flush();
          if (rest !== "") send(rest);
        }
        return {
          text: matcher.output,
          finishReason: !matcher.stopped && metadata.stopReason === "maxTokens" ? "length" : "stop",
          promptTokens: prompt.tokens.length,
          completionTokens: sequence.tokenMeter.usedOutputTokens - outputBefore,
          ...(recorder && { logprobs: recorder.covering(matcher.output.length) }),
        };
      } finally {
        completion.dispose(); // leaves the sequence, and its KV cache, to the next request
      }
    } catch (err) {
      if (this.closing) throw new EngineClosingError();
      if (options.signal.aborted) throw new GenerationAbortedError("the client went away", { cause: err });
      throw err;
    } finally {
      if (sequence) this.pool.release(sequence);
    }
  }
}
