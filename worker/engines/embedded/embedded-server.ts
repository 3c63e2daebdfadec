import { basename } from "node:path";
import type { Hono } from "hono";
import { LlamaGenerator, type GenerationStats, type LlamaGeneratorOptions } from "./llama-generator.ts";
import { openAiApp } from "./openai-routes.ts";
import { LlamaEmbedder } from "./llama-embedder.ts";
import type { Log } from "../../../core/log/process-log.ts";

export interface EmbeddedEngineOptions extends LlamaGeneratorOptions {
  /** The model id `/v1/models` lists and every response echoes. Default: the file's name without `.gguf`. */
  servedModelName?: string;
  /** The engine process's log (errors, and each request at debug); default none. */
  log?: Log;
}

/** A loaded model behind an OpenAI-compatible HTTP API, ready to be served. */
export interface EmbeddedEngine {
  /** The HTTP API; serve it with any Hono adapter. */
  app: Hono;
  servedModelName: string;
  /** Tokens of context each request has (what the model was created with, perhaps rounded up). */
  contextSize: number;
  /** The chat format `/v1/chat/completions` renders messages with (node-llama-cpp's wrapper name). */
  chatFormat: string;
  stats(): GenerationStats;
  /** Refuses new requests, aborts running ones (they end with 503 or an error event) and frees the model. */
  close(): Promise<void>;
}

/**
 * Loads the model (one context, `parallel` sequences) and builds the engine's HTTP API around it.
 * Resolves once the model can serve; rejects when it cannot be loaded.
 */
export async function createEmbeddedEngine(options: EmbeddedEngineOptions): Promise<EmbeddedEngine> {
  const generator = await LlamaGenerator.load(options);
  const servedModelName = options.servedModelName ?? basename(options.modelPath).replace(/\.gguf$/i, "");
  // Its context is created on the first embeddings request (see LlamaEmbedder): nothing is allocated here.
  const embedder = new LlamaEmbedder({ model: generator.model, contextSize: generator.contextSize, ...(options.threads && { threads: options.threads }) });
  return {
    app: openAiApp({ generator, embedder, servedModelName, loadedAtSeconds: Math.floor(Date.now() / 1000), ...(options.log && { log: options.log }) }),
    servedModelName,
    contextSize: generator.contextSize,
    chatFormat: generator.chatWrapper.wrapperName,
    stats: () => generator.stats(),
    close: async () => {
      await embedder.close(); // before the generator frees the model its context is built on
      await generator.close();
    },
  };
}
