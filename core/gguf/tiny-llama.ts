import { GgufType, type GgufKv } from "./gguf-format.ts";
import type { GgufHeader } from "./gguf-reader.ts";
import { GgufWriter } from "./gguf-writer.ts";

/** Shape of the generated model; small enough to decode quickly on a CPU, real enough for llama.cpp. */
export interface TinyLlamaShape {
  embedding: number;
  layers: number;
  heads: number;
  kvHeads: number;
  feedForward: number;
  context: number;
  /** Seed of the deterministic weights. */
  seed: number;
}

export const DEFAULT_TINY_LLAMA: TinyLlamaShape = { embedding: 32, layers: 2, heads: 4, kvHeads: 2, feedForward: 64, context: 1024, seed: 1 };

/** Deterministic uniform numbers in [-1, 1) (mulberry32): the same seed makes the same model, byte for byte. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

/**
 * A llama-architecture GGUF with deterministic random weights and the real tokenizer of `vocab`
 * (a llama.cpp vocabulary file, e.g. ggml-vocab-llama-spm.gguf): every `tokenizer.*` key is copied.
 * Its output is gibberish, but it tokenizes, decodes and streams like any llama model.
 */
export function tinyLlamaGguf(vocab: GgufHeader, shape: TinyLlamaShape = DEFAULT_TINY_LLAMA): Buffer {
  const tokens = vocab.kv.get("tokenizer.ggml.tokens");
  if (!tokens || tokens.type !== GgufType.ARRAY) throw new Error("vocabulary file has no tokenizer.ggml.tokens");
  const nVocab = (tokens.value as { items: unknown[] }).items.length;
  const { embedding: e, layers, heads, kvHeads, feedForward: ff, context } = shape;
  const headDim = e / heads;
  const eKv = headDim * kvHeads;
  const rand = prng(shape.seed);
  const weights = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = rand() * scale;
    return a;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);

  const w = new GgufWriter()
    .string("general.architecture", "llama")
    .string("general.name", "hearth-tiny-llama")
    .u32("general.file_type", 0)
    .u32("llama.context_length", context)
    .u32("llama.embedding_length", e)
    .u32("llama.block_count", layers)
    .u32("llama.feed_forward_length", ff)
    .u32("llama.attention.head_count", heads)
    .u32("llama.attention.head_count_kv", kvHeads)
    .u32("llama.rope.dimension_count", headDim)
    .f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
  for (const [key, kv] of vocab.kv) if (key.startsWith("tokenizer.")) w.set(key, kv as GgufKv);

  w.tensor({ name: "token_embd.weight", dims: [e, nVocab], data: weights(e * nVocab, 0.5) });
  for (let l = 0; l < layers; l++) {
    const p = `blk.${l}`;
    w.tensor({ name: `${p}.attn_norm.weight`, dims: [e], data: ones(e) })
      .tensor({ name: `${p}.attn_q.weight`, dims: [e, e], data: weights(e * e, 0.3) })
      .tensor({ name: `${p}.attn_k.weight`, dims: [e, eKv], data: weights(e * eKv, 0.3) })
      .tensor({ name: `${p}.attn_v.weight`, dims: [e, eKv], data: weights(e * eKv, 0.3) })
      .tensor({ name: `${p}.attn_output.weight`, dims: [e, e], data: weights(e * e, 0.3) })
      .tensor({ name: `${p}.ffn_norm.weight`, dims: [e], data: ones(e) })
      .tensor({ name: `${p}.ffn_gate.weight`, dims: [e, ff], data: weights(e * ff, 0.3) })
      .tensor({ name: `${p}.ffn_up.weight`, dims: [e, ff], data: weights(e * ff, 0.3) })
      .tensor({ name: `${p}.ffn_down.weight`, dims: [ff, e], data: weights(ff * e, 0.3) });
  }
  w.tensor({ name: "output_norm.weight", dims: [e], data: ones(e) });
  w.tensor({ name: "output.weight", dims: [e, nVocab], data: weights(e * nVocab, 0.5) });
  return w.toBuffer();
}
