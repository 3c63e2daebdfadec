import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { readGguf } from "./gguf-reader.ts";
import { DEFAULT_TINY_LLAMA, tinyLlamaGguf, type TinyLlamaShape } from "./tiny-llama.ts";

/** LLaMA's SentencePiece vocabulary, shipped beside this file (from llama.cpp, MIT). */
export const LLAMA_VOCAB_PATH = fileURLToPath(new URL("./vocab/ggml-vocab-llama-spm.gguf", import.meta.url));

/**
 * Writes the project's tiny llama model to `path` unless it is already there (the bytes are
 * deterministic, so an existing file is the same model). Returns `path`. Written to a temporary
 * name first: a reader never sees half a model.
 */
export function ensureTinyLlamaFile(path: string, shape: TinyLlamaShape = DEFAULT_TINY_LLAMA): string {
  if (existsSync(path)) return path;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, tinyLlamaGguf(readGguf(readFileSync(LLAMA_VOCAB_PATH)), shape));
  renameSync(tmp, path);
  return path;
}
