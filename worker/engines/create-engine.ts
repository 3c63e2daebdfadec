import type { EngineSpec } from "../../core/contracts/endpoint.ts";
import type { Engine } from "./engine.ts";
import { HandlerEngine } from "./handler-engine.ts";

export interface CreateEngineOptions {
  /** `HEARTH_HANDLER_DIRS`: where handler modules may live. */
  handlerDirs: readonly string[];
}

/** The one place that maps an endpoint's engine spec to an implementation. */
export function createEngine(spec: EngineSpec, options: CreateEngineOptions): Engine {
  switch (spec.kind) {
    case "handler":
      return new HandlerEngine({ module: spec.module, handlerDirs: options.handlerDirs });
  }
}
