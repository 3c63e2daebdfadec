/**
 * The `data` payloads of a server-sent event stream, one per event, as they arrive. Events are
 * separated by a blank line (LF or CRLF); multi-line data is joined with "\n"; comments (`:`) and
 * other fields are skipped. Ends when the body ends; stops reading when the consumer stops.
 */
export async function* sseData(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = "";
  let data: string[] = [];
  const parts = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      const { value, done } = await parts.next();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.charCodeAt(nl - 1) === 13 ? buffer.slice(0, nl - 1) : buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (data.length > 0) yield data.join("\n");
          data = [];
        } else if (line.startsWith("data:")) {
          data.push(line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5));
        }
      }
      if (done) break;
    }
    // A last event cut off without its blank line: browsers drop it, but an engine that closes
    // the stream right after its final `data:` line still meant it.
    if (buffer.startsWith("data:")) data.push(buffer.charCodeAt(5) === 32 ? buffer.slice(6) : buffer.slice(5));
    if (data.length > 0) yield data.join("\n");
  } finally {
    // Leaving early (abort, consumer gone): the body's own iterator decides what happens to the connection.
    await parts.return?.().catch(() => {});
  }
}
