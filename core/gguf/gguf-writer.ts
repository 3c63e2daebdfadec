import { DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgmlType, GgufType, type GgufArray, type GgufKv, type GgufScalar } from "./gguf-format.ts";

export interface TensorInput {
  name: string;
  /** Dimensions, fastest-varying first (ggml's ne[]). */
  dims: number[];
  /** Row-major data matching `dims`; written as F32. */
  data: Float32Array;
}

/** Builds a GGUF v3 file in memory: metadata in insertion order, tensors as F32, aligned. */
export class GgufWriter {
  private readonly kv: [string, GgufKv][] = [];
  private readonly tensors: TensorInput[] = [];

  set(key: string, entry: GgufKv): this {
    this.kv.push([key, entry]);
    return this;
  }
  string(key: string, value: string): this {
    return this.set(key, { type: GgufType.STRING, value });
  }
  u32(key: string, value: number): this {
    return this.set(key, { type: GgufType.UINT32, value });
  }
  f32(key: string, value: number): this {
    return this.set(key, { type: GgufType.FLOAT32, value });
  }
  bool(key: string, value: boolean): this {
    return this.set(key, { type: GgufType.BOOL, value });
  }
  tensor(t: TensorInput): this {
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new Error(`tensor ${t.name}: dims ${t.dims.join("x")} need ${n} values, got ${t.data.length}`);
    this.tensors.push(t);
    return this;
  }

  toBuffer(): Buffer {
    const parts: Buffer[] = [];
    const u32 = (v: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
    const u64 = (v: number | bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
    const str = (s: string) => { const b = Buffer.from(s, "utf8"); u64(b.length); parts.push(b); };
    const scalar = (type: GgufType, v: GgufScalar) => {
      const b8 = Buffer.alloc(8);
      switch (type) {
        case GgufType.UINT8: parts.push(Buffer.from([Number(v)])); return;
        case GgufType.INT8: b8.writeInt8(Number(v)); parts.push(b8.subarray(0, 1)); return;
        case GgufType.UINT16: b8.writeUInt16LE(Number(v)); parts.push(b8.subarray(0, 2)); return;
        case GgufType.INT16: b8.writeInt16LE(Number(v)); parts.push(b8.subarray(0, 2)); return;
        case GgufType.UINT32: b8.writeUInt32LE(Number(v)); parts.push(b8.subarray(0, 4)); return;
        case GgufType.INT32: b8.writeInt32LE(Number(v)); parts.push(b8.subarray(0, 4)); return;
        case GgufType.FLOAT32: b8.writeFloatLE(Number(v)); parts.push(b8.subarray(0, 4)); return;
        case GgufType.BOOL: parts.push(Buffer.from([v ? 1 : 0])); return;
        case GgufType.STRING: str(String(v)); return;
        case GgufType.UINT64: b8.writeBigUInt64LE(BigInt(v as number | bigint)); parts.push(b8); return;
        case GgufType.INT64: b8.writeBigInt64LE(BigInt(v as number | bigint)); parts.push(b8); return;
        case GgufType.FLOAT64: b8.writeDoubleLE(Number(v)); parts.push(b8); return;
        default: throw new Error(`GGUF: cannot write value type ${type}`);
      }
    };

    u32(GGUF_MAGIC);
    u32(GGUF_VERSION);
    u64(this.tensors.length);
    u64(this.kv.length);
    for (const [key, { type, value }] of this.kv) {
      str(key);
      u32(type);
      if (type === GgufType.ARRAY) {
        const arr = value as GgufArray;
        u32(arr.itemType);
        u64(arr.items.length);
        for (const item of arr.items) scalar(arr.itemType, item);
      } else {
        scalar(type, value as GgufScalar);
      }
    }
    const align = (n: number) => Math.ceil(n / DEFAULT_ALIGNMENT) * DEFAULT_ALIGNMENT;
    let offset = 0;
    for (const t of this.tensors) {
      str(t.name);
      u32(t.dims.length);
      for (const d of t.dims) u64(d);
      u32(GgmlType.F32);
      u64(offset);
      offset = align(offset + t.data.byteLength);
    }
    const headerLength = parts.reduce((a, b) => a + b.length, 0);
    parts.push(Buffer.alloc(align(headerLength) - headerLength));
    for (const t of this.tensors) {
      const bytes = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
      parts.push(bytes, Buffer.alloc(align(bytes.length) - bytes.length));
    }
    return Buffer.concat(parts);
  }
}
