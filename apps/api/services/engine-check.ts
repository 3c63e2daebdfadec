import type { EngineSpec } from "../../../core/contracts/endpoint.ts";
import { resolveHandlerDir, resolveHandlerModule } from "../../../core/engine/handler-module-path.ts";
import { checkModelSource, type ModelSourcePolicy } from "../../../core/engine/model-source-policy.ts";
import { secretPaths } from "../../../core/secrets/endpoint-secrets.ts";
import type { SecretBox } from "../../../core/secrets/secret-box.ts";
import { ApiError } from "../api-error.ts";

export interface EngineCheckContext {
  /** Directories an endpoint's handler module must live in (HEARTH_HANDLER_DIRS). */
  handlerDirs: string[];
  /** Where models may come from (HEARTH_MODEL_DIRS, HEARTH_MODEL_ALLOWLIST). */
  modelPolicy: ModelSourcePolicy;
  /** Seals endpoint secrets; absent when HEARTH_SECRETS_KEY is not set, and then secrets are refused. */
  secrets?: SecretBox;
}

/**
 * Refuses an engine the workers could not (or must not) run, before it is stored: 400 naming the
 * field (`path` is where the engine sits in the body, e.g. `engine`). The model is checked again by
 * the worker at download, on what it really opens and connects to.
 */
export async function checkEngine(engine: EngineSpec, ctx: EngineCheckContext, path: string): Promise<void> {
  const paths = secretPaths(engine);
  if (ctx.secrets === undefined && paths.length > 0) {
    const message = "this deployment keeps no secrets (HEARTH_SECRETS_KEY is not set): send non-secret values only";
    throw new ApiError(400, "secrets_unavailable", `${path}.${paths[0]}: ${message}`, paths.map((p) => ({ path: `${path}.${p}`, message })));
  }
  if (engine.kind === "handler") {
    const r = await resolveHandlerModule(engine.module, ctx.handlerDirs);
    if (!r.ok) throw ApiError.badRequest(`${path}.module: ${r.reason}`, [{ path: `${path}.module`, message: r.reason }]);
    return;
  }
  if (engine.kind === "runpod") {
    const r = await resolveHandlerDir(engine.cwd, ctx.handlerDirs);
    if (!r.ok) throw ApiError.badRequest(`${path}.cwd: ${r.reason}`, [{ path: `${path}.cwd`, message: r.reason }]);
    return;
  }
  const v = await checkModelSource({ model: engine.model, ...(engine.modelCredentials && { modelCredentials: engine.modelCredentials }) }, ctx.modelPolicy);
  if (!v.ok) throw ApiError.badRequest(`${path}.${v.field}: ${v.reason}`, [{ path: `${path}.${v.field}`, message: v.reason }]);
}
