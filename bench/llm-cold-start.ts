import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { compare, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { startHearthFor } from "./support/hearth-processes.ts";
import { summarize } from "./support/latency-stats.ts";

const NAME = "llm-cold-start";
const floorEntry = fileURLToPath(new URL("./floors/bare-llama-first-token.mjs", import.meta.url));
/** The same deterministic model file llm-stream uses. */
const modelPath = join(tmpdir(), "hearth-bench", "tiny-llama.gguf");
const PROMPT = "Once upon a time";
/** A cold start that takes this long is broken, not slow (ms). */
const START_TIMEOUT_MS = 120_000;
/** Ratio of Hearth's zero-to-first-token to the bare process's spawn-to-first-token (issue 10). */
const TARGET = 1.3;

/** The floor once: spawn → the bare process's line at its first token, on the bench's clock. */
async function floorOnce(): Promise<number> {
  const started = performance.now();
  const child = spawn(process.execPath, [floorEntry, modelPath, PROMPT], { stdio: ["ignore", "pipe", "inherit"] });
  const firstToken = new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.includes('"first-token"')) resolve(performance.now() - started);
    });
    child.once("exit", (code) => reject(new Error(`floor: the bare llama process exited ${code} before its first token`)));
  });
  try {
    return await firstToken;
  } finally {
    await new Promise((r) => (child.exitCode === null ? child.once("exit", r) : r(undefined)));
  }
}

/** Reads a streamed completion until its first chunk with text; ms from just before the request. */
async function firstStreamedToken(url: string, apiKey: string): Promise<number> {
  const started = performance.now();
  const res = await fetch(url, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "tiny-llama", prompt: PROMPT, max_tokens: 1, temperature: 0, stream: true }),
    signal: AbortSignal.timeout(START_TIMEOUT_MS),
  });
  if (!res.ok || !res.body) throw new Error(`hearth: the streamed completion answered ${res.status}: ${await res.text()}`);
  const decoder = new TextDecoder();
  let buffered = "";
  for await (const bytes of res.body) {
    buffered += decoder.decode(bytes as Uint8Array, { stream: true });
    for (let nl = buffered.indexOf("\n"); nl >= 0; nl = buffered.indexOf("\n")) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6)) as { choices?: { text?: string }[] };
      if (chunk.choices?.some((c) => typeof c.text === "string" && c.text !== "")) {
        const ms = performance.now() - started;
        await res.body.cancel().catch(() => {});
        return ms;
      }
    }
  }
  throw new Error("hearth: the stream ended without a token");
}

/** Waits until the endpoint has no worker at all (the last one went idle, stopped and exited). */
async function waitForZero(url: string, apiKey: string, endpointId: string): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/v2/${endpointId}/health`, { headers: { authorization: `Bearer ${apiKey}` } });
    const workers = ((await res.json()) as { workers?: Record<string, number> }).workers ?? {};
    if (Object.values(workers).every((n) => n === 0)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error("hearth: the endpoint's worker did not stop");
}

/**
 * The embedded LLM endpoint from zero workers to its first streamed token (request → first token:
 * the scheduler's reaction, the worker's boot, the engine's start and model load, one token) against
 * a bare node-llama-cpp process that loads the same model and writes one token (spawn → first
 * token), one after the other, `count` times each. `flashboot: false`: every Hearth start is cold.
 */
export async function llmColdStart(ctx: BenchContext): Promise<BenchResult> {
  const count = ctx.config.coldStarts;
  ensureTinyLlamaFile(modelPath);
  const problems: string[] = [];
  ctx.log(`floor: ${count + 1} bare node-llama-cpp processes, spawn → first token (the first unmeasured)`);
  const floor: number[] = [];
  for (let i = 0; i <= count; i++) {
    const ms = await floorOnce();
    if (i > 0) floor.push(ms);
  }

  ctx.log("hearth: starting the API, the control plane and the scheduler");
  const hearth = await startHearthFor(ctx, NAME);
  const hearthMs: number[] = [];
  try {
    const apiKey = await hearth.createTenant("bench-llm-cold-start");
    const endpointId = await hearth.createEndpoint(apiKey, {
      name: "bench-llm-cold-start",
      engine: { kind: "openai", profile: "embedded", model: pathToFileURL(modelPath).href, args: { threads: 1, "ctx-size": 1024 }, concurrency: 1 },
      workersMin: 0,
      workersMax: 1,
      idleTimeout: 1,
      flashboot: false,
    });
    const url = `${hearth.url}/v2/${endpointId}/openai/v1/completions`;
    ctx.log(`hearth: ${count + 1} cold starts of endpoint ${endpointId} (the first unmeasured)`);
    for (let i = 0; i <= count; i++) {
      await waitForZero(hearth.url, apiKey, endpointId);
      const ms = await firstStreamedToken(url, apiKey);
      if (i > 0) hearthMs.push(ms);
    }
    if (!hearth.api.alive() || !hearth.scheduler.alive()) problems.push("hearth: the API or the scheduler died during the run");
  } finally {
    await hearth.stop();
  }
  const h = summarize(hearthMs);
  const f = summarize(floor);
  return {
    name: NAME,
    comparison: compare("p50 zero → first streamed token (embedded engine, tiny model)", "ms", h.p50, f.p50, { op: "<=", value: TARGET }),
    problems,
    warnings: [],
    settings: { coldStarts: count, prompt: PROMPT, threads: 1, ctxSize: 1024, flashboot: false },
    hearth: { latencyMs: h },
    floor: { latencyMs: f },
    cpu: {},
  };
}
