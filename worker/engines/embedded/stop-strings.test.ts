import { describe, expect, it } from "vitest";
import { StopStringMatcher } from "./stop-strings.ts";

/** Feeds `pieces` and returns what was sent, piece by piece, plus the flush when no stop string appeared. */
function run(stops: string[], pieces: string[]) {
  const m = new StopStringMatcher(stops);
  const sent = pieces.map((p) => m.push(p));
  if (!m.stopped) sent.push(m.flush());
  return { sent, output: m.output, stopped: m.stopped };
}

describe("StopStringMatcher", () => {
  it("sends text at once when it cannot start a stop string", () => {
    expect(run(["STOP"], ["Hello", " world"])).toEqual({ sent: ["Hello", " world", ""], output: "Hello world", stopped: false });
  });

  it("cuts right before a stop string split across pieces, spaces included", () => {
    const r = run([" e"], ["sión", " ", "ex", "trem"]);
    expect(r.sent).toEqual(["sión", "", "", ""]);
    expect(r.output).toBe("sión");
    expect(r.stopped).toBe(true);
  });

  it("holds back a possible start and releases it once it diverges, or at the end", () => {
    expect(run(["abc"], ["xa", "b", "d"]).sent).toEqual(["x", "", "abd", ""]);
    expect(run(["abc"], ["xab"]).sent).toEqual(["x", "ab"]);
  });

  it("stops at the earliest of several stop strings, even when a later one completed first", () => {
    const r = run(["### Human", "\n\n### Human", "zz"], ["ok\n\n### Hu", "man zz"]);
    expect(r.output).toBe("ok");
    expect(r.sent.join("")).toBe("ok");
  });

  it("finds a stop string inside a single piece and ignores what follows", () => {
    const m = new StopStringMatcher(["END"]);
    expect(m.push("abENDcd")).toBe("ab");
    expect(m.push("more")).toBe("");
    expect(m.output).toBe("ab");
  });

  it("without stop strings sends everything", () => {
    expect(run([], ["a", "b"]).sent).toEqual(["a", "b", ""]);
  });
});
