import { performance } from "node:perf_hooks";

/** The prompt every LLM start benchmark sends, and the bare floor generates from. */
export const LLM_PROMPT = "Once upon a time";
/** An LLM start that takes this long is broken, not slow (ms). */
export const LLM_START_TIMEOUT_MS = 120_000;

/** Reads a streamed completion (one token) until its first chunk with text; ms from just before the request. */
export async function firstStreamedToken(url: string, apiKey: string): Promise<number> {
  const started = performance.now();
  const res = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny-llama", prompt: LLM_PROMPT, max_tokens: 1, temperature: 0, stream: true }),
    signal: AbortSignal.timeout(LLM_START_TIMEOUT_MS),
  });
  if (!res.ok || !res.body) throw new Error(`hearth: the streamed completion answered ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buffered = "";
  let last = "";
  for await (const bytes of res.body) {
    buffered += decoder.decode(bytes as Uint8Array, { stream: true });
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      last = line;
      const chunk = JSON.parse(line.slice(6)) as { choices?: { text?: string }[] };
      if (chunk.choices?.some((c) => typeof c.text === "string" && c.text !== "")) {
        const ms = performance.now() - started;
        await res.body.cancel().catch(() => {});
        return ms;
      }
    }
  }
  throw new Error(`hearth: the stream ended without a token (last event: ${last.slice(0, 300) || "none"})`);
}

/** The endpoint's `/health` worker counters. */
async function workerCounts(url: string, apiKey: string, endpointId: string): Promise<Record<string, number>> {
  const res = await fetch(`${url}/v2/${endpointId}/health`, { headers: { authorization: `Bearer ${apiKey}` } });
  return ((await res.json()) as { workers?: Record<string, number> }).workers ?? {};
}

/** Waits until `/health` counts no worker at all (the last one went idle, stopped and exited). */
export async function waitForZero(url: string, apiKey: string, endpointId: string): Promise<void> {
  const deadline = Date.now() + LLM_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (Object.values(await workerCounts(url, apiKey, endpointId)).every((n) => n === 0)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("hearth: the endpoint's worker did not stop");
}

/** Waits until `/health` counts an idle worker and none running (the last request's job is done). */
export async function waitForIdle(url: string, apiKey: string, endpointId: string): Promise<void> {
  const deadline = Date.now() + LLM_START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const w = await workerCounts(url, apiKey, endpointId);
    if ((w.idle ?? 0) >= 1 && (w.running ?? 0) === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("hearth: the endpoint's worker did not go idle");
}

/** Waits until `done()` holds (a worker's line seen), polling every 50 ms; false past `timeoutMs`. */
export async function until(done: () => boolean, timeoutMs = LLM_START_TIMEOUT_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return done();
}
