import { describe, expect, it } from "vitest";
import { parseToolCalls, ToolCallSplitter, type ToolCallDelta } from "./tool-call-stream.ts";

const two = '{"name": "get_weather", "arguments": {"city": "Pa}ri\\"s {", "days": 3}\n}\n{"name":"get_time","arguments":{"zone":"UTC"}}';

/** Joins streamed deltas per call index, as an OpenAI client does. */
function assemble(deltas: ToolCallDelta[]): { id?: string; name?: string; arguments: string }[] {
  const calls: { id?: string; name?: string; arguments: string }[] = [];
  for (const d of deltas) {
    const call = (calls[d.index] ??= { arguments: "" });
    if (d.id !== undefined) call.id = d.id;
    if (d.name !== undefined) call.name = d.name;
    call.arguments += d.arguments ?? "";
  }
  return calls;
}

describe("parseToolCalls", () => {
  it("reads one call, and parallel calls one per line, braces and quotes inside strings included", () => {
    expect(parseToolCalls('{"name": "f", "arguments": {}}')!.map((c) => c.function)).toEqual([{ name: "f", arguments: "{}" }]);
    const calls = parseToolCalls(two)!;
    expect(calls.map((c) => c.function)).toEqual([
      { name: "get_weather", arguments: '{"city":"Pa}ri\\"s {","days":3}' },
      { name: "get_time", arguments: '{"zone":"UTC"}' },
    ]);
    expect(new Set(calls.map((c) => c.id)).size).toBe(2);
    for (const c of calls) expect(c.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
  });

  it("refuses text, a call cut short, and anything between calls", () => {
    expect(parseToolCalls("hello")).toBeUndefined();
    expect(parseToolCalls("")).toBeUndefined();
    expect(parseToolCalls('{"name": "f", "arguments": {"a": 1')).toBeUndefined();
    expect(parseToolCalls('{"name": "f", "arguments": {}}\n{"name": "g", "argu')).toBeUndefined();
    expect(parseToolCalls('{"name": "f", "arguments": {}} and {"name": "g", "arguments": {}}')).toBeUndefined();
    expect(parseToolCalls('{"arguments": {}}')).toBeUndefined();
  });
});

describe("ToolCallSplitter", () => {
  it("streams each call's index, id and name, then arguments that join to its JSON, however the text is cut", () => {
    for (const size of [1, 2, 3, 5, 8, 13, two.length]) {
      const splitter = new ToolCallSplitter("required");
      const deltas: ToolCallDelta[] = [];
      for (let i = 0; i < two.length; i += size) {
        const out = splitter.push(two.slice(i, i + size));
        expect(out.content).toBe("");
        deltas.push(...out.deltas);
      }
      expect(splitter.finish(two)).toEqual([]);
      const calls = assemble(deltas);
      expect(calls.map((c) => c.name)).toEqual(["get_weather", "get_time"]);
      expect(JSON.parse(calls[0]!.arguments)).toEqual({ city: 'Pa}ri"s {', days: 3 });
      expect(JSON.parse(calls[1]!.arguments)).toEqual({ zone: "UTC" });
      // The call object's own closing brace and the space before it are never sent as arguments.
      expect(calls[0]!.arguments.endsWith("}")).toBe(true);
      expect(calls[0]!.arguments).not.toMatch(/\}\s*\}$/);
      // Each call's first delta carries its id and name, and only the first.
      for (const index of [0, 1]) expect(deltas.filter((d) => d.index === index && d.id !== undefined)).toHaveLength(1);
    }
  });

  it("under auto, text that does not start with { is content, sent at once", () => {
    const splitter = new ToolCallSplitter("auto");
    expect(splitter.push("Hello")).toEqual({ content: "Hello", deltas: [] });
    expect(splitter.push(" {x}")).toEqual({ content: " {x}", deltas: [] });
    expect(splitter.holdsCall).toBe(false);
    expect(splitter.finish("Hello {x}")).toBeUndefined();
  });

  it("a call cut before its name is complete has sent nothing; one cut later is not finished", () => {
    const early = new ToolCallSplitter("required");
    expect(early.push('{"name": "get_')).toEqual({ content: "", deltas: [] });
    expect(early.callStarted).toBe(false);
    expect(early.finish('{"name": "get_')).toBeUndefined();

    const late = new ToolCallSplitter("required");
    const out = late.push('{"name": "f", "arguments": {"a": 1');
    expect(out.deltas).toEqual([{ index: 0, id: expect.stringMatching(/^call_/), name: "f", arguments: "" }, { index: 0, arguments: '{"a": 1' }]);
    expect(late.finish('{"name": "f", "arguments": {"a": 1')).toBeUndefined();
  });
});
