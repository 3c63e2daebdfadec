import type { OpenAIEngineSpec } from "../contracts/endpoint.ts";

/**
 * The name an OpenAI engine serves its model under: the spec's `servedModelName`, else the
 * model's file or folder name (`file:///m/llama-3-8b.gguf` → `llama-3-8b`, `s3://b/llama-8b/` →
 * `llama-8b`). The API answers `/v1/models` with it and the worker launches the engine with it.
 */
export function servedModelName(spec: Pick<OpenAIEngineSpec, "model" | "servedModelName">): string {
  if (spec.servedModelName) return spec.servedModelName;
  const path = spec.model.replace(/^[a-z0-9]+:\/\//i, "").replace(/\/+$/, "");
  const last = path.slice(path.lastIndexOf("/") + 1);
  return last.replace(/\.gguf$/i, "") || "model";
}
