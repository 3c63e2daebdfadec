import { Agent, request } from "node:http";
import { StringDecoder } from "node:string_decoder";

/** What one streamed completion looked like from the client, times in this process's `performance.now()` ms. */
export interface StreamTiming {
  /** When the request was written. */
  sentAt: number;
  /** When the response ended (or failed). */
  endedAt: number;
  /** Arrival of each content chunk (an event with non-empty `choices[0].text`): the time of the socket read that completed it. */
  tokenTimes: number[];
  /** Socket reads of the body, and those that carried at least one content chunk (fewer than tokens when chunks arrive batched). */
  reads: number;
  tokenReads: number;
  /** SSE `data:` events, `[DONE]` included. */
  events: number;
  text: string;
  /** `usage.completion_tokens` of the usage chunk, when the stream had one. */
  completionTokens: number | undefined;
  /** Why the stream did not do what it should (non-200, an error event, no `[DONE]`); undefined when it did. */
  problem: string | undefined;
}

/**
 * POSTs JSON and reads the answer as OpenAI-style server-sent events over one kept-alive
 * connection (node:http): each socket read is timestamped on arrival, before any parsing, and its
 * complete events are parsed at once. Cheap per read, so the client is not what is measured.
 */
export function sseTimingClient(baseUrl: string, headers: Record<string, string>, idleTimeoutMs: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL(baseUrl);
  return {
    stream(path: string, body: string): Promise<StreamTiming> {
      return new Promise((resolve) => {
        const t: StreamTiming = { sentAt: 0, endedAt: 0, tokenTimes: [], reads: 0, tokenReads: 0, events: 0, text: "", completionTokens: undefined, problem: undefined };
        let settled = false;
        const finish = (problem?: string) => {
          if (settled) return;
          settled = true;
          t.endedAt = performance.now();
          t.problem ??= problem;
          resolve(t);
        };
        const req = request(
          {
            agent,
            host: url.hostname,
            port: url.port,
            method: "POST",
            path,
            headers: { ...headers, "content-type": "application/json", accept: "text/event-stream", "content-length": Buffer.byteLength(body) },
            timeout: idleTimeoutMs,
          },
          (res) => {
            if (res.statusCode !== 200) {
              const parts: Buffer[] = [];
              res.on("data", (c: Buffer) => parts.push(c));
              res.on("end", () => finish(`HTTP ${res.statusCode} ${Buffer.concat(parts).toString("utf8").slice(0, 300)}`));
              return;
            }
            const decoder = new StringDecoder("utf8");
            let buffer = "";
            let done = false;
            res.on("data", (chunk: Buffer) => {
              const now = performance.now();
              t.reads++;
              buffer += decoder.write(chunk);
              let carriedToken = false;
              let end: number;
              while ((end = buffer.indexOf("\n\n")) >= 0) {
                const event = buffer.slice(0, end);
                buffer = buffer.slice(end + 2);
                // Relays send single-line `data:` events; comments (`: keep-alive`) are skipped.
                if (!event.startsWith("data:")) continue;
                const data = event.slice(event.charCodeAt(5) === 32 ? 6 : 5);
                t.events++;
                if (data === "[DONE]") {
                  done = true;
                  continue;
                }
                let parsed: { choices?: { text?: unknown }[]; usage?: { completion_tokens?: unknown } | null; error?: unknown };
                try {
                  parsed = JSON.parse(data) as typeof parsed;
                } catch {
                  t.problem ??= `an event that is not JSON: ${data.slice(0, 200)}`;
                  continue;
                }
                if (parsed.error !== undefined) t.problem ??= `error event ${JSON.stringify(parsed.error).slice(0, 300)}`;
                const text = parsed.choices?.[0]?.text;
                if (typeof text === "string" && text !== "") {
                  t.tokenTimes.push(now);
                  t.text += text;
                  carriedToken = true;
                }
                if (typeof parsed.usage?.completion_tokens === "number") t.completionTokens = parsed.usage.completion_tokens;
              }
              if (carriedToken) t.tokenReads++;
            });
            res.on("end", () => finish(done ? undefined : "the stream ended without data: [DONE]"));
            res.on("error", (err) => finish(err.message));
          },
        );
        req.on("timeout", () => req.destroy(new Error(`nothing received for ${idleTimeoutMs} ms`)));
        req.on("error", (err) => finish(err.message));
        t.sentAt = performance.now();
        req.end(body);
      });
    },
    close: () => agent.destroy(),
  };
}
