import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { openaiEngine } from "../../core/contracts/endpoint.ts";
import { ensureTinyLlamaFile } from "../../core/gguf/tiny-llama-file.ts";
import type { ProfileArgs } from "../../core/engine/engine-profiles.ts";
import { EMBEDDED_ENGINE } from "../../worker/engines/create-engine.ts";
import { OpenAIEngine } from "../../worker/engines/openai/openai-engine.ts";
import { FileModelSource } from "../../worker/models/file-model-source.ts";
import { ModelStore } from "../../worker/models/model-store.ts";

/**
 * llama.cpp's own `llama-server`, where one is built (README, "not exercised"): tests of the
 * `llamacpp` profile run against it and are skipped with this path in their name elsewhere.
 */
export const LLAMA_SERVER = process.env.HEARTH_LLAMA_SERVER ?? "/var/cache/hearth/llama-build/bin/llama-server";
export const llamaServerBuilt = existsSync(LLAMA_SERVER);

export interface LlamaServerEngine {
  /** The engine's origin: `${base}/v1` is its OpenAI API. */
  base: string;
  stop(): Promise<void>;
}

/** The tiny model served by llama-server through the worker's own supervisor (the `llamacpp` profile), as a worker runs it. */
export async function startLlamaServerEngine(args: ProfileArgs, concurrency = 4): Promise<LlamaServerEngine> {
  // The profile runs `llama-server` from PATH, as in images/llamacpp.
  process.env.PATH = `${dirname(LLAMA_SERVER)}:${process.env.PATH ?? ""}`;
  const scratch = mkdtempSync(join(tmpdir(), "hearth-llama-server-"));
  const modelPath = ensureTinyLlamaFile(join(scratch, "tiny-llama.gguf"));
  const engine = new OpenAIEngine({
    spec: openaiEngine.parse({ kind: "openai", profile: "llamacpp", model: `file://${modelPath}`, args, concurrency }),
    models: new ModelStore({ cacheDir: join(scratch, "cache"), sources: [new FileModelSource({ allowedDirs: [scratch] })] }),
    embedded: EMBEDDED_ENGINE,
    onLog: () => {},
  });
  await engine.start();
  const base = engine.baseUrl;
  if (base === undefined) throw new Error("llama-server started without a base URL");
  return {
    base,
    stop: async () => {
      await engine.stop();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
