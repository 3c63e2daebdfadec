import { describe, expect, it } from "vitest";
import { sseData } from "./sse-events.ts";

function body(parts: string[]): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  return new ReadableStream({
    start(c) {
      for (const p of parts) c.enqueue(enc.encode(p));
      c.close();
    },
  });
}

async function all(parts: string[]): Promise<string[]> {
  const out: string[] = [];
  for await (const d of sseData(body(parts))) out.push(d);
  return out;
}

describe("sseData", () => {
  it("splits events across arbitrary read boundaries, LF and CRLF", async () => {
    expect(await all(['data: {"a":1}\n\ndata: {"b"', ':2}\r\n\r', "\n: keep-alive\n\ndata: [DONE]\n\n"])).toEqual(['{"a":1}', '{"b":2}', "[DONE]"]);
  });

  it("joins multi-line data, skips other fields, and yields a final event without a blank line", async () => {
    expect(await all(["event: x\nid: 3\ndata: one\ndata:two\n\n", "data: last"])).toEqual(["one\ntwo", "last"]);
  });

  it("splits a multi-byte character across reads correctly", async () => {
    const bytes = new TextEncoder().encode("data: héllo\n\n");
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(bytes.slice(0, 8));
        c.enqueue(bytes.slice(8));
        c.close();
      },
    });
    const out: string[] = [];
    for await (const d of sseData(stream)) out.push(d);
    expect(out).toEqual(["héllo"]);
  });
});
