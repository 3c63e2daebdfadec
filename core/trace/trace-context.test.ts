import { describe, expect, it } from "vitest";
import { childSpan, formatTraceparent, parseTraceparent } from "./trace-context.ts";

const T = "4bf92f3577b34da6a3ce929d0e0e4736";
const S = "00f067aa0ba902b7";

describe("W3C traceparent", () => {
  it("parses a version-00 header and formats it back unchanged", () => {
    const h = `00-${T}-${S}-01`;
    expect(parseTraceparent(h)).toEqual({ traceId: T, spanId: S, flags: 1 });
    expect(formatTraceparent(parseTraceparent(h)!)).toBe(h);
    expect(parseTraceparent(` 00-${T}-${S}-00 `)).toEqual({ traceId: T, spanId: S, flags: 0 });
  });

  it("accepts a later version's extra fields and ignores them, as §3.2.4 asks", () => {
    expect(parseTraceparent(`01-${T}-${S}-01-what-comes-next`)).toEqual({ traceId: T, spanId: S, flags: 1 });
  });

  it.each([
    ["version ff", `ff-${T}-${S}-01`],
    ["extra fields on version 00", `00-${T}-${S}-01-extra`],
    ["all-zero trace id", `00-${"0".repeat(32)}-${S}-01`],
    ["all-zero parent id", `00-${T}-${"0".repeat(16)}-01`],
    ["upper-case hex", `00-${T.toUpperCase()}-${S}-01`],
    ["short trace id", `00-${T.slice(1)}-${S}-01`],
    ["NUL inside", `00-${T}-${S}-0\u0000`],
    ["lone surrogate", `00-${T}-${S}-\ud800`],
    ["empty", ""],
    ["huge", `00-${T}-${S}-01-${"x".repeat(10_000)}`],
  ])("refuses %s (a new trace is started instead)", (_, h) => {
    expect(parseTraceparent(h)).toBeUndefined();
  });

  it("makes a child in the parent's trace with a new span id and the parent's flags", () => {
    const random = (bytes: number) => "ab".repeat(bytes);
    expect(childSpan({ traceId: T, spanId: S, flags: 0 }, random)).toEqual({ traceId: T, spanId: "ab".repeat(8), flags: 0 });
  });

  it("starts a sampled trace without a parent, and never an all-zero id", () => {
    const ids = ["0".repeat(32), "c".repeat(32), "0".repeat(16), "d".repeat(16)];
    const random = () => ids.shift()!;
    expect(childSpan(undefined, random)).toEqual({ traceId: "c".repeat(32), spanId: "d".repeat(16), flags: 1 });
  });

  it("gives every span a different id from the real random source", () => {
    const seen = new Set(Array.from({ length: 2000 }, () => childSpan(undefined).spanId));
    expect(seen.size).toBe(2000);
    for (const id of seen) expect(id).toMatch(/^[0-9a-f]{16}$/);
  });
});
