import { z } from "zod";
import { OpenAiError } from "./openai-error.ts";

/*
 * `/v1/embeddings` as OpenAI defines it: `input` is a string, an array of strings, an array of
 * token ids or an array of token-id arrays (at most 2048 items, none empty); `encoding_format` is
 * `float` (default) or `base64`; `dimensions` asks for a shorter vector; `user` is accepted and
 * unused. Fields not named here are stripped, as the other routes of this engine do.
 */

/** OpenAI's cap on the items of one request. */
export const MAX_EMBEDDING_INPUTS = 2048;

// Range and emptiness are checked after parsing (see embeddingInputs, LlamaEmbedder), so every refusal of an input names `input`.
const tokenId = z.number().int();
const inputShape = z.union(
  [
    z.string(),
    z.array(z.string()).min(1).max(MAX_EMBEDDING_INPUTS),
    z.array(tokenId).min(1),
    z.array(z.array(tokenId)).min(1).max(MAX_EMBEDDING_INPUTS),
  ],
  { error: `input must be a string, an array of strings, an array of token ids or an array of token-id arrays (1 to ${MAX_EMBEDDING_INPUTS} items, none empty)` },
);

export const embeddingsRequest = z.object({
  input: inputShape,
  /** Any value is accepted: one engine serves one model, and clients hard-code names. */
  model: z.string().nullish(),
  encoding_format: z.enum(["float", "base64"], { error: "encoding_format must be float or base64" }).nullish(),
  dimensions: z.number().int().min(1).nullish(),
  user: z.string().nullish(),
});
export type EmbeddingsRequest = z.output<typeof embeddingsRequest>;

/** One item to embed: text, or token ids the caller tokenized itself. */
export type EmbeddingInput = string | readonly number[];

/**
 * The request's items, one embedding each. Empty text is refused as OpenAI refuses it (a 400
 * naming `input`): it has no tokens to pool, and node-llama-cpp would answer an empty vector.
 */
export function embeddingInputs(input: EmbeddingsRequest["input"]): EmbeddingInput[] {
  const items: EmbeddingInput[] = typeof input === "string" ? [input] : isTokenArray(input) ? [input] : input;
  items.forEach((item, i) => {
    if (item.length === 0) throw OpenAiError.invalidRequest(`${items.length === 1 && typeof input === "string" ? "input" : `input[${i}]`} must not be empty`, "input");
  });
  return items;
}

function isTokenArray(input: readonly (string | number | readonly number[])[]): input is number[] {
  return typeof input[0] === "number";
}

/**
 * A vector as `base64`: its float32 values little-endian, as OpenAI encodes them (and as its
 * clients decode them, with a Float32Array over the bytes).
 */
export function base64Vector(vector: readonly number[]): string {
  const bytes = new DataView(new ArrayBuffer(vector.length * 4));
  vector.forEach((v, i) => bytes.setFloat32(i * 4, v, true));
  return Buffer.from(bytes.buffer).toString("base64");
}
