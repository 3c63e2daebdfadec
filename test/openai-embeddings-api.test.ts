import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { findEngineProcesses } from "./support/engine-processes.ts";
import { startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

/**
 * `/v2/:ep/openai/v1/embeddings` end to end: the real `openai` client against the API, a job on the
 * endpoint's queue, a worker supervising the embedded engine with the tiny model, and the engine's
 * answer relayed as it is.
 */
describe("OpenAI embeddings route on an embedded-engine endpoint", () => {
  let stack: Stack;
  let key: string;
  let ep: string;
  let dir: string;
  let modelPath: string;
  let openai: OpenAI;

  const engineUrl = () => {
    const found = findEngineProcesses(modelPath);
    if (found.length !== 1) throw new Error(`expected one engine process, found ${found.length}`);
    return found[0]!.url;
  };

  beforeAll(async () => {
    stack = await startStack();
    dir = await mkdtemp(join(tmpdir(), "hearth-openai-embeddings-"));
    // Engines run as HEARTH_ENGINE_USER (nobody), which must be able to reach the model: mkdtemp makes 0700.
    await chmod(dir, 0o755);
    modelPath = ensureTinyLlamaFile(join(dir, "tiny-llama.gguf"));
    key = await stack.tenant("embeddings");
    ep = await stack.endpoint(key, {
      engine: { kind: "openai", profile: "embedded", model: `file://${modelPath}`, args: { threads: 1, "ctx-size": 256 }, concurrency: 4 },
      workersMin: 1,
      workersMax: 1,
    });
    openai = new OpenAI({ baseURL: `${stack.api.url}/v2/${ep}/openai/v1`, apiKey: key, maxRetries: 0 });
    await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body.workers.idle === 1, 60_000);
  }, 90_000);
  afterAll(async () => {
    await stack?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("answers with the engine's own vectors, float and base64, and records the prompt tokens on the job", async () => {
    const input = ["The cat sat on the mat", "A dog"];
    const viaApi = await openai.embeddings.create({ model: "tiny-llama", input, encoding_format: "float" });
    const direct = (await (
      await fetch(`${engineUrl()}/v1/embeddings`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "tiny-llama", input, encoding_format: "float" }) })
    ).json()) as OpenAI.CreateEmbeddingResponse;
    expect(viaApi).toEqual(direct);
    expect(viaApi.data).toHaveLength(2);
    expect(viaApi.data[1]!.embedding.length).toBe(viaApi.data[0]!.embedding.length);

    // The client's default asks for base64 and decodes it: the same floats through the whole stack.
    const decoded = await openai.embeddings.create({ model: "tiny-llama", input });
    expect(decoded.data.map((d) => d.embedding)).toEqual(direct.data.map((d) => d.embedding));

    // Billing and metrics read token counts from the job record, as for completions.
    const row = await waitFor(async () => {
      const rows = await stack.sql<{ prompt_tokens: number | null; completion_tokens: number | null }[]>`
        select prompt_tokens, completion_tokens from jobs where endpoint_id = ${ep} and status = 'COMPLETED' and prompt_tokens is not null limit 1`;
      return rows[0];
    });
    expect(row).toEqual({ prompt_tokens: direct.usage.prompt_tokens, completion_tokens: 0 });
  });

  it("relays the engine's 400 naming input, and refuses a request without input at the API", async () => {
    const tooLong = await openai.embeddings.create({ model: "tiny-llama", input: "word ".repeat(300) }).catch((e: unknown) => e);
    expect(tooLong).toBeInstanceOf(OpenAI.BadRequestError);
    expect((tooLong as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ type: "invalid_request_error", param: "input", code: "context_length_exceeded" });

    const empty = await openai.embeddings.create({ model: "tiny-llama", input: "" }).catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(OpenAI.BadRequestError);
    expect((empty as InstanceType<typeof OpenAI.BadRequestError>).error).toMatchObject({ param: "input" });

    const missing = await stack.call("POST", `/v2/${ep}/openai/v1/embeddings`, { key, body: { model: "tiny-llama" } });
    expect(missing.status).toBe(400);
    expect(missing.body.error).toMatchObject({ type: "invalid_request_error", param: "input" });
  });

  it("needs a run key: a read key gets 403 in OpenAI's shape", async () => {
    const made = await stack.call("POST", "/api/v1/keys", { key, body: { name: "reader", scope: "read" } });
    expect(made.status).toBe(200);
    const reader = new OpenAI({ baseURL: `${stack.api.url}/v2/${ep}/openai/v1`, apiKey: made.body.key as string, maxRetries: 0 });
    const refused = await reader.embeddings.create({ model: "tiny-llama", input: "hi" }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((refused as InstanceType<typeof OpenAI.PermissionDeniedError>).error).toMatchObject({ type: "permission_error", code: "insufficient_scope" });
    // The same key may still list the model: reading is its scope.
    expect((await reader.models.list()).data.map((m) => m.id)).toEqual(["tiny-llama"]);
  });
});
