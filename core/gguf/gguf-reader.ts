import { GGUF_MAGIC, GgufType, type GgufArray, type GgufKv, type GgufScalar, type GgufTensorInfo } from "./gguf-format.ts";

export interface GgufHeader {
  version: number;
  kv: Map<string, GgufKv>;
  tensors: GgufTensorInfo[];
}

/** Reads the metadata and tensor table of a GGUF file held in memory (tensor data is not copied). */
export function readGguf(buf: Buffer): GgufHeader {
  let pos = 0;
  const u32 = () => {
    const v = buf.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const u64 = () => {
    const v = buf.readBigUInt64LE(pos);
    pos += 8;
    return v;
  };
  const str = () => {
    const len = Number(u64());
    const s = buf.toString("utf8", pos, pos + len);
    pos += len;
    return s;
  };
  const scalar = (type: GgufType): GgufScalar => {
    switch (type) {
      case GgufType.UINT8: return buf.readUInt8(pos++);
      case GgufType.INT8: return buf.readInt8(pos++);
      case GgufType.UINT16: { const v = buf.readUInt16LE(pos); pos += 2; return v; }
      case GgufType.INT16: { const v = buf.readInt16LE(pos); pos += 2; return v; }
      case GgufType.UINT32: return u32();
      case GgufType.INT32: { const v = buf.readInt32LE(pos); pos += 4; return v; }
      case GgufType.FLOAT32: { const v = buf.readFloatLE(pos); pos += 4; return v; }
      case GgufType.BOOL: return buf.readUInt8(pos++) !== 0;
      case GgufType.STRING: return str();
      case GgufType.UINT64: return u64();
      case GgufType.INT64: { const v = buf.readBigInt64LE(pos); pos += 8; return v; }
      case GgufType.FLOAT64: { const v = buf.readDoubleLE(pos); pos += 8; return v; }
      default: throw new Error(`GGUF: unknown value type ${type} at byte ${pos}`);
    }
  };

  if (u32() !== GGUF_MAGIC) throw new Error("not a GGUF file (bad magic)");
  const version = u32();
  if (version < 2) throw new Error(`GGUF version ${version} is not supported`);
  const tensorCount = Number(u64());
  const kvCount = Number(u64());
  const kv = new Map<string, GgufKv>();
  for (let i = 0; i < kvCount; i++) {
    const key = str();
    const type = u32() as GgufType;
    if (type === GgufType.ARRAY) {
      const itemType = u32() as GgufType;
      const n = Number(u64());
      const items: GgufScalar[] = new Array(n);
      for (let j = 0; j < n; j++) items[j] = scalar(itemType);
      kv.set(key, { type, value: { itemType, items } satisfies GgufArray });
    } else {
      kv.set(key, { type, value: scalar(type) });
    }
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = str();
    const nDims = u32();
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(Number(u64()));
    const type = u32();
    const offset = Number(u64());
    tensors.push({ name, dims, type, offset });
  }
  return { version, kv, tensors };
}
