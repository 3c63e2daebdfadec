import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openaiEngine } from "../core/contracts/endpoint.ts";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { EMBEDDED_ENGINE } from "../worker/engines/create-engine.ts";
import { OpenAIEngine } from "../worker/engines/openai/openai-engine.ts";
import { FileModelSource } from "../worker/models/file-model-source.ts";
import { ModelStore } from "../worker/models/model-store.ts";
import { describeEngineConformance } from "./engine-conformance.ts";
import { waitFor } from "./support/services.ts";

const llamaServer = process.env.HEARTH_LLAMA_SERVER ?? "/var/cache/hearth/llama-build/bin/llama-server";
const scratch = mkdtempSync(join(tmpdir(), "hearth-openai-engine-"));
const modelPath = ensureTinyLlamaFile(join(scratch, "tiny-llama.gguf"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function engineFor(profile: "embedded" | "llamacpp", overrides: Record<string, unknown> = {}, extra: Partial<ConstructorParameters<typeof OpenAIEngine>[0]> = {}): OpenAIEngine {
  const args = profile === "embedded" ? { threads: 1, "ctx-size": 1024 } : { threads: 1, "ctx-size": 4096 };
  const spec = openaiEngine.parse({ kind: "openai", profile, model: `file://${modelPath}`, args, concurrency: 4, ...overrides });
  return new OpenAIEngine({
    spec,
    models: new ModelStore({ cacheDir: join(scratch, "cache"), sources: [new FileModelSource({ allowedDirs: [scratch] })] }),
    embedded: EMBEDDED_ENGINE,
    restartBaseMs: 100,
    onLog: () => {},
    ...extra,
  });
}
const embedded = (overrides: Record<string, unknown> = {}) => engineFor("embedded", overrides);

async function engineStats(engine: OpenAIEngine): Promise<{ generated_tokens_total: number; active_requests: number }> {
  return (await fetch(`${engine.baseUrl}/stats`)).json() as Promise<{ generated_tokens_total: number; active_requests: number }>;
}

/**
 * The same conformance cases for each profile that can run here: the embedded engine always,
 * llama.cpp's own `llama-server` where one is built. `generatedSoFar` reads the engine's own count
 * of decoded tokens and whether it is still decoding, to see an abort reach the engine.
 */
function describeProfile(profile: "embedded" | "llamacpp", generatedSoFar: (engine: OpenAIEngine) => Promise<{ tokens: number; busy: boolean }>): void {
  describeEngineConformance(`openai (${profile} profile)`, {
    value: async () => ({
      engine: engineFor(profile),
      input: { openai_route: "/v1/models" },
      expected: expect.objectContaining({ object: "list", data: [expect.objectContaining({ id: "tiny-llama", object: "model" })] }),
    }),
    stream: async () => {
      const engine = engineFor(profile);
      return {
        engine,
        input: { prompt: "The cat", sampling_params: { max_tokens: 12, temperature: 0 }, stream: true },
        // The same request answered whole by the engine itself must read the same as the chunks joined.
        checkChunks: async (chunks) => {
          const direct = (await (
            await fetch(`${engine.baseUrl}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "The cat", max_tokens: 12, temperature: 0 }) })
          ).json()) as { choices: { text: string }[]; usage: { prompt_tokens: number; completion_tokens: number } };
          const last = chunks.at(-1);
          expect(last).toEqual({ choices: [{ tokens: [] }], usage: { input: direct.usage.prompt_tokens, output: direct.usage.completion_tokens } });
          const text = chunks.slice(0, -1).map((c) => (c as { choices: { tokens: string[] }[] }).choices[0]!.tokens.join("")).join("");
          expect(text).toBe(direct.choices[0]!.text);
        },
      };
    },
    abortable: async () => {
      const engine = engineFor(profile);
      return {
        engine,
        // Greedy, on a prompt whose 900 tokens llama-server streams whole: on some gibberish (e.g. after
        // "Go") its output parser ends the stream with "does not match the expected Content-only format".
        input: { prompt: "The cat", sampling_params: { max_tokens: 900, temperature: 0, ignore_eos: true }, stream: true },
        // The engine's own count stops growing, short of the 900 asked for, and nothing decodes: the abort reached the decoding.
        abortObserved: async () => {
          const a = await generatedSoFar(engine);
          await new Promise((r) => setTimeout(r, 200));
          const b = await generatedSoFar(engine);
          return !a.busy && a.tokens === b.tokens && b.tokens < 900;
        },
      };
    },
  });
}

describeProfile("embedded", async (engine) => {
  const s = await engineStats(engine);
  return { tokens: s.generated_tokens_total, busy: s.active_requests > 0 };
});

if (existsSync(llamaServer)) {
  // The profile runs `llama-server` from PATH, as in images/llamacpp.
  process.env.PATH = `${dirname(llamaServer)}:${process.env.PATH ?? ""}`;
  describeProfile("llamacpp", async (engine) => {
    const slots = (await (await fetch(`${engine.baseUrl}/slots`)).json()) as { is_processing: boolean; next_token?: { n_decoded?: number }[] }[];
    return { tokens: slots.reduce((n, s) => n + (s.next_token?.[0]?.n_decoded ?? 0), 0), busy: slots.some((s) => s.is_processing) };
  });
} else {
  describe.skip(`openai (llamacpp profile): no llama-server at ${llamaServer} (set HEARTH_LLAMA_SERVER)`, () => {
    it("runs the conformance suite against llama.cpp's server", () => {});
  });
}

describe("openai engine: supervision and errors", () => {
  const engines: OpenAIEngine[] = [];
  afterAll(async () => {
    await Promise.allSettled(engines.map((e) => e.stop()));
  });

  it("fails the job in flight when the engine dies, restarts the engine, and runs the next job", async () => {
    const engine = embedded();
    engines.push(engine);
    await engine.start();
    const first = engine.enginePid!;
    const result = await engine.run({ id: "j1", input: { prompt: "Go", sampling_params: { max_tokens: 900 }, stream: true } }, new AbortController().signal);
    if (result.kind !== "stream") throw new Error("expected a stream");
    const it = result.chunks[Symbol.asyncIterator]();
    await it.next();
    process.kill(first, "SIGKILL");
    await expect((async () => {
      for (;;) if ((await it.next()).done) return;
    })()).rejects.toThrow(/the engine failed during the request .*SIGKILL/);
    expect(await engine.health()).toBe(false);

    // A job arriving meanwhile waits for the restarted engine instead of failing.
    const next = await engine.run({ id: "j2", input: { prompt: "Hi", sampling_params: { max_tokens: 3, temperature: 0 } } }, new AbortController().signal);
    expect(next.kind).toBe("value");
    expect(engine.enginePid).not.toBe(first);
    expect(await engine.health()).toBe(true);
    expect(next.generation?.()).toMatchObject({ completionTokens: 3, promptTokens: expect.any(Number), ttftMs: expect.any(Number) });
  });

  it("sends the job's traceparent with its request: the engine's line for it carries the trace id", async () => {
    const lines: string[] = [];
    // HEARTH_LOG_LEVEL=debug reaches the embedded engine through its environment allow-list.
    const engine = engineFor("embedded", {}, { onLog: (line) => void lines.push(line), inheritedEnv: { ...process.env, HEARTH_LOG_LEVEL: "debug" } });
    engines.push(engine);
    await engine.start();
    const traceId = "5b8efff798038103d269b633813fc60c";
    await engine.run({ id: "jt", input: { prompt: "Hi", sampling_params: { max_tokens: 2 } }, traceparent: `00-${traceId}-eee19b7ec3c1b174-01` }, new AbortController().signal);
    const line = await waitFor(() => lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "request" && l.path === "/v1/completions"));
    expect(line).toMatchObject({ level: "debug", component: "embedded-engine", traceId, status: 200 });
  });

  it("relays the engine's refusal as a job error carrying its status", async () => {
    const engine = embedded();
    engines.push(engine);
    await engine.start();
    const r = await engine.run({ id: "j3", input: { openai_route: "/v1/chat/completions", openai_input: { messages: "not a list" } } }, new AbortController().signal);
    expect(r).toMatchObject({ kind: "value", value: { error: { status: 400, type: "invalid_request_error", message: expect.any(String) } } });
  });

  it("refuses a job input it cannot map, naming the problem", async () => {
    const engine = embedded();
    engines.push(engine);
    await engine.start();
    await expect(engine.run({ id: "j4", input: { neither: true } }, new AbortController().signal)).rejects.toThrow(/exactly one of prompt or messages/);
  });

  it("will not start on a model that is not there", async () => {
    const engine = embedded({ model: `file://${join(scratch, "missing.gguf")}` });
    engines.push(engine);
    await expect(engine.start()).rejects.toThrow(/could not be materialised/);
  });
});
