import { randomFillSync } from "node:crypto";

/** One span's place in a trace, as W3C Trace Context carries it (`traceparent`). Ids are lowercase hex. */
export interface TraceParent {
  /** 32 hex digits, not all zero. */
  traceId: string;
  /** 16 hex digits, not all zero: the span the next hop is a child of. */
  spanId: string;
  /** Bit 0: sampled. */
  flags: number;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;
const ZERO_TRACE = "0".repeat(32);
const ZERO_SPAN = "0".repeat(16);

/**
 * Parses a `traceparent` header by W3C Trace Context §3.2: version `ff` is invalid; version `00`
 * has exactly four fields; a later version may append fields, which are ignored. Anything invalid
 * is undefined (the caller starts a new trace, as the spec says a receiver must).
 */
export function parseTraceparent(header: string | undefined | null): TraceParent | undefined {
  if (!header || header.length > 512) return undefined;
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return undefined;
  const [, version, traceId, spanId, flags, rest] = m as unknown as [string, string, string, string, string, string | undefined];
  if (version === "ff" || (version === "00" && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, flags: parseInt(flags, 16) };
}

export function formatTraceparent(t: TraceParent): string {
  return `00-${t.traceId}-${t.spanId}-${(t.flags & 0xff).toString(16).padStart(2, "0")}`;
}

/** A new span in `parent`'s trace, or the first span of a new (sampled) trace. */
export function childSpan(parent: TraceParent | undefined, random: (bytes: number) => string = randomHex): TraceParent {
  return { traceId: parent?.traceId ?? nonZero(random, 16), spanId: nonZero(random, 8), flags: parent?.flags ?? 1 };
}

function nonZero(random: (bytes: number) => string, bytes: number): string {
  for (;;) {
    const id = random(bytes);
    if (/[^0]/.test(id)) return id;
  }
}

/** Random bytes drawn from a pool refilled 4 KB at a time: ids are made on every request, and one `randomBytes` call each costs more than the id is worth. */
const POOL = Buffer.alloc(4096);
let poolAt = POOL.length;

function randomHex(bytes: number): string {
  if (poolAt + bytes > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const hex = POOL.toString("hex", poolAt, poolAt + bytes);
  poolAt += bytes;
  return hex;
}
