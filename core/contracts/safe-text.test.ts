import { describe, expect, it } from "vitest";
import { hasUnstorableChars, jsonDepth, MAX_JSON_DEPTH, resourceId, safeText } from "./safe-text.ts";

describe("safe text", () => {
  it("finds NUL and lone surrogates, and lets paired surrogates (emoji) through", () => {
    expect(hasUnstorableChars("a\u0000b")).toBe(true);
    expect(hasUnstorableChars("a\uD800b")).toBe(true);
    expect(hasUnstorableChars("\uDC00")).toBe(true);
    expect(hasUnstorableChars("x\uD83D")).toBe(true);
    expect(hasUnstorableChars("ok 😀 é")).toBe(false);
    expect(safeText(10).safeParse("n\u0000").success).toBe(false);
    expect(safeText(10).safeParse("name").success).toBe(true);
  });

  it("takes printable ASCII ids only", () => {
    expect(resourceId.safeParse("sync-0b1c-u1").success).toBe(true);
    expect(resourceId.safeParse("a\u0000b").success).toBe(false);
    expect(resourceId.safeParse("a b").success).toBe(false);
    expect(resourceId.safeParse("é").success).toBe(false);
  });
});

describe("jsonDepth", () => {
  const nested = (n: number) => JSON.parse("[".repeat(n) + "]".repeat(n));
  it("counts objects and arrays, not scalars", () => {
    expect(jsonDepth(1)).toBe(0);
    expect(jsonDepth({})).toBe(1);
    expect(jsonDepth({ a: [1, { b: null }] })).toBe(3);
    expect(jsonDepth(nested(MAX_JSON_DEPTH))).toBe(MAX_JSON_DEPTH);
  });
  it("stops past the limit on a value too deep to stringify", () => {
    const deep = nested(200_000);
    expect(() => JSON.stringify(deep)).toThrow(RangeError);
    expect(jsonDepth(deep)).toBe(MAX_JSON_DEPTH + 1);
  });
});
