/**
 * GGUF (v3), the file format of llama.cpp models: enough of it to read a file's metadata and
 * tensor table, and to write a model from typed arrays. Layout (little-endian): magic "GGUF",
 * version u32, tensor count u64, metadata count u64; metadata as key (u64 length + UTF-8), type u32,
 * value; tensor infos as name, n_dims u32, dims u64[] (fastest first), type u32, offset u64; then
 * tensor data, each tensor aligned to `general.alignment` (default 32).
 */
export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3;
export const DEFAULT_ALIGNMENT = 32;

export enum GgufType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Tensor element types used here (ggml's enum values). */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
}

export type GgufScalar = number | bigint | boolean | string;
export interface GgufArray {
  itemType: GgufType;
  items: GgufScalar[];
}
export interface GgufKv {
  type: GgufType;
  value: GgufScalar | GgufArray;
}

export interface GgufTensorInfo {
  name: string;
  /** Dimensions, fastest-varying first (ggml's ne[]). */
  dims: number[];
  type: GgmlType;
  /** Byte offset from the start of the data section. */
  offset: number;
}
