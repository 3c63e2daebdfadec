import type { LlamaEmbeddingContext, LlamaModel, Token } from "node-llama-cpp";
import type { EmbeddingInput } from "./embeddings-request.ts";
import { FifoPool } from "./fifo-pool.ts";
import { GenerationAbortedError } from "./llama-generator.ts";
import { EngineClosingError, OpenAiError } from "./openai-error.ts";

export interface LlamaEmbedderOptions {
  /** The generator's model: embeddings come from the same weights, no second copy is loaded. */
  model: LlamaModel;
  /** Tokens one input may have (with the tokens the model adds around it); the generator's context size. */
  contextSize: number;
  /** CPU threads for evaluation. Default: node-llama-cpp's thread budget for this machine. */
  threads?: number;
}

export interface EmbeddingsResult {
  /** One unit-length vector per input, in input order. */
  vectors: number[][];
  /** Tokens evaluated over all inputs (each with the tokens the model adds around it). */
  promptTokens: number;
}

/**
 * Embeddings of the engine's model, through node-llama-cpp's embedding context: a second llama.cpp
 * context on the same weights, created with embeddings output on.
 *
 * The context is created on the first request, not at start: it holds a KV cache and compute
 * buffers of `contextSize` tokens, which an endpoint that only generates never needs. Measured with
 * the tiny test model: 60-100 ms to create; the engine's RSS grew ~3 MB at 1024 tokens, and ~130 MB
 * at 2048 tokens once a 1500-token input had been embedded (buffers grow with use); a 7B model's KV
 * cache alone is hundreds of MB. It then stays for the engine's life, so later requests do not pay
 * for it again.
 *
 * One request embeds at a time (the context has one sequence); others wait in a FIFO, and a request
 * whose client goes away leaves the queue, or stops between two of its inputs.
 */
export class LlamaEmbedder {
  private context: Promise<LlamaEmbeddingContext> | undefined;
  private pool: FifoPool<LlamaEmbeddingContext> | undefined;
  private closing = false;
  private readonly running = new Set<Promise<unknown>>();

  constructor(private readonly options: LlamaEmbedderOptions) {}

  /** Length of the vectors this model gives (`n_embd`). */
  get dimensions(): number {
    return this.options.model.embeddingVectorSize;
  }

  /**
   * Embeds each input in order. Rejects with a 400 `OpenAiError` naming `input` for an input that
   * does not fit the context or names a token the vocabulary does not have, with
   * `GenerationAbortedError` when `signal` aborts, with `EngineClosingError` once closing.
   */
  embed(inputs: readonly EmbeddingInput[], signal: AbortSignal): Promise<EmbeddingsResult> {
    const run = this.run(inputs, signal);
    this.running.add(run);
    void run.catch(() => {}).finally(() => this.running.delete(run));
    return run;
  }

  /** Refuses new requests, waits for the running ones to stop, and frees the embedding context. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.pool?.close(new EngineClosingError());
    await Promise.allSettled([...this.running]);
    const context = await this.context?.catch(() => undefined);
    await context?.dispose();
  }

  private async run(inputs: readonly EmbeddingInput[], signal: AbortSignal): Promise<EmbeddingsResult> {
    if (this.closing) throw new EngineClosingError();
    const { pool, context: shared } = await this.ready();
    // Every input is checked before the request queues: a bad one is a 400 at once, with nothing evaluated.
    const checked = inputs.map((input, i) => this.check(shared, input, inputs.length === 1 ? "input" : `input[${i}]`));
    let context: LlamaEmbeddingContext | undefined;
    try {
      context = await pool.acquire(signal);
      const vectors: number[][] = [];
      for (const { tokens } of checked) {
        signal.throwIfAborted();
        if (this.closing) throw new EngineClosingError();
        const embedding = await context.getEmbeddingFor(tokens);
        vectors.push(unitLength(embedding.vector));
      }
      return { vectors, promptTokens: checked.reduce((sum, c) => sum + c.evaluated, 0) };
    } catch (err) {
      if (this.closing) throw new EngineClosingError();
      if (signal.aborted) throw new GenerationAbortedError("the client went away", { cause: err });
      throw err;
    } finally {
      if (context) pool.release(context);
    }
  }

  /**
   * The input as tokens, checked against the vocabulary and the context, with the count of tokens
   * evaluated for it (node-llama-cpp adds the model's beginning token, and an end token for encoders).
   */
  private check(context: LlamaEmbeddingContext, input: EmbeddingInput, name: string): { tokens: Token[]; evaluated: number } {
    const { model, contextSize } = this.options;
    let tokens: Token[];
    if (typeof input === "string") {
      // Special-token text is plain text here: the input is data, not a prompt format.
      tokens = model.tokenize(input, false);
    } else {
      // An id past the vocabulary would make llama.cpp fail the whole batch (or read out of bounds).
      const vocabulary = vocabularySize(model);
      const bad = input.find((t) => vocabulary === undefined || t < 0 || t >= vocabulary);
      if (bad !== undefined) {
        throw OpenAiError.invalidRequest(
          vocabulary === undefined ? `${name}: token ids cannot be checked against this model's vocabulary; send text` : `${name}: token id ${bad} is not in this model's vocabulary of ${vocabulary} tokens`,
          "input",
        );
      }
      tokens = input as Token[];
    }
    // Text of only characters the tokenizer drops: nothing to pool (node-llama-cpp would answer []).
    if (tokens.length === 0) throw OpenAiError.invalidRequest(`${name} has no tokens`, "input");
    const evaluated = context.calculateInputLength(tokens);
    // The embedding context refuses an input of the whole context size or more.
    if (evaluated >= contextSize) {
      throw OpenAiError.invalidRequest(
        `This model's maximum context length is ${contextSize} tokens, however ${name} has ${evaluated} tokens. Please reduce the length of the input.`,
        "input",
        "context_length_exceeded",
      );
    }
    return { tokens, evaluated };
  }

  private ready(): Promise<{ pool: FifoPool<LlamaEmbeddingContext>; context: LlamaEmbeddingContext }> {
    this.context ??= this.options.model
      .createEmbeddingContext({
        contextSize: this.options.contextSize,
        // A non-causal (BERT-like) model must see the whole input in one batch, or llama.cpp refuses
        // it. Not for a decoder: its batch reserves logits for every token (for the tiny model at
        // 2048 tokens the engine grew by 390 MB with a whole-context batch, 130 MB with the default).
        ...(isNonCausal(this.options.model) && { batchSize: this.options.contextSize }),
        // Unset, node-llama-cpp's embedding context takes 6 threads whatever the machine has.
        threads: this.options.threads ?? this.options.model.llama.maxThreads,
      })
      .catch((err: unknown) => {
        this.context = undefined; // the next request tries again
        throw err;
      });
    return this.context.then((context) => {
      if (this.closing) throw new EngineClosingError();
      this.pool ??= new FifoPool([context]);
      return { pool: this.pool, context };
    });
  }
}

/** Whether the GGUF says its attention is bidirectional (`<arch>.attention.causal = false`: BERT and its kin). */
function isNonCausal(model: LlamaModel): boolean {
  const metadata = model.fileInfo.metadata as Record<string, unknown>;
  const arch = metadata[model.fileInfo.metadata.general.architecture] as { attention?: { causal?: unknown } } | undefined;
  return arch?.attention?.causal === false;
}

/** Tokens in the model's vocabulary, from the GGUF's own list; undefined when the file does not say. */
function vocabularySize(model: LlamaModel): number | undefined {
  const tokenizer = (model.fileInfo.metadata as { tokenizer?: { ggml?: { tokens?: unknown } } }).tokenizer;
  const tokens = tokenizer?.ggml?.tokens;
  return Array.isArray(tokens) ? tokens.length : undefined;
}

/**
 * The vector scaled to length 1, as OpenAI's embeddings are and llama-server's `/v1/embeddings`
 * answers by default: cosine similarity is then a dot product. Float32 values, as the model gives
 * them, so `base64` carries them exactly. A zero vector stays as it is.
 */
function unitLength(vector: readonly number[]): number[] {
  const norm = Math.sqrt(vector.reduce((sum, v) => sum + v * v, 0));
  return vector.map((v) => Math.fround(norm > 0 ? v / norm : v));
}
