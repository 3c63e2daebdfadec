import { describe, expect, it } from "vitest";
import { TokenTiming } from "./token-timing.ts";

describe("TokenTiming", () => {
  it("reports nothing before the first token", () => {
    expect(new TokenTiming(100).stats()).toEqual({});
  });

  it("has a time to first token but no inter-token latency after one token", () => {
    const t = new TokenTiming(100);
    t.token(130);
    expect(t.stats()).toEqual({ ttftMs: 30 });
    expect(t.tokens).toBe(1);
  });

  it("averages the gaps after the first token", () => {
    const t = new TokenTiming(1000);
    for (const at of [1050, 1052, 1056, 1062]) t.token(at);
    expect(t.stats()).toEqual({ ttftMs: 50, itlMs: 4 });
    expect(t.tokens).toBe(4);
  });
});
