import type { EngineSpec } from "../../../core/contracts/endpoint.ts";
import { resolveHandlerModule } from "../../../core/engine/handler-module-path.ts";
import { ApiError } from "../api-error.ts";

export interface EngineCheckContext {
  /** Directories an endpoint's handler module must live in (HEARTH_HANDLER_DIRS). */
  handlerDirs: string[];
}

/**
 * Refuses an engine the workers could not (or must not) run, before it is stored: 400 naming the
 * field (`path` is where the engine sits in the body, e.g. `engine`).
 */
export async function checkEngine(engine: EngineSpec, ctx: EngineCheckContext, path: string): Promise<void> {
  if (engine.kind === "handler") {
    const r = await resolveHandlerModule(engine.module, ctx.handlerDirs);
    if (!r.ok) throw ApiError.badRequest(`${path}.module: ${r.reason}`, [{ path: `${path}.module`, message: r.reason }]);
  }
}
