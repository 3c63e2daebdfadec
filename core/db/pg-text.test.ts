import { describe, expect, it } from "vitest";
import { fromPgText, toPgText } from "./pg-text.ts";

describe("pg text encoding", () => {
  it("leaves ordinary strings alone", () => {
    expect(toPgText("héllo ✓ 😀")).toEqual({ text: "héllo ✓ 😀", exact: null });
  });

  it.each(["a\u0000b", "x\ud800y", "\udc00", "\ud83d", "ok\u0000\ud800\udc00\ud800"])("round-trips %j losslessly, with a column copy Postgres can hold", (s) => {
    const { text, exact } = toPgText(s);
    expect(text.includes("\u0000")).toBe(false);
    expect(text.isWellFormed()).toBe(true);
    expect(exact).not.toBeNull();
    // The companion is plain ASCII for the parts Postgres objects to.
    expect(exact!.includes("\u0000")).toBe(false);
    expect(exact!.isWellFormed()).toBe(true);
    expect(fromPgText(text, exact)).toBe(s);
  });
});
