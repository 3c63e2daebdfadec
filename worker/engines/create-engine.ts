import { fileURLToPath } from "node:url";
import type { EngineSpec } from "../../core/contracts/endpoint.ts";
import type { Engine } from "./engine.ts";
import { HandlerEngine } from "./handler-engine.ts";
import { OpenAIEngine, type OpenAIEngineOptions } from "./openai/openai-engine.ts";
import type { EngineUser } from "./openai/engine-user.ts";
import { RunPodEngine, type RunPodEngineOptions } from "./runpod/runpod-engine.ts";
import type { Log } from "../../core/log/process-log.ts";

export interface CreateEngineOptions {
  /** `HEARTH_HANDLER_DIRS`: where handler modules may live. */
  handlerDirs: readonly string[];
  /** Materialises `openai` engines' models (file://, s3://, https://). */
  models: OpenAIEngineOptions["models"];
  /** Forwarded engine log lines and supervisor states (default: stderr). */
  onEngineLog?: OpenAIEngineOptions["onLog"];
  onEngineState?: OpenAIEngineOptions["onState"];
  /** The user engine processes run as (HEARTH_ENGINE_USER, resolved). Default: this process's user. */
  engineUser?: EngineUser;
  /** The endpoint's own variables (`engine.env`, secrets opened): the handler's process.env, or added to the engine's environment. Default none. */
  endpointEnv?: Readonly<Record<string, string>>;
  /** Which endpoint and worker this is (`runpod` engines tell their worker). */
  endpointId: string;
  workerId: string;
  /** The worker's log (`runpod` engines: tracebacks of failed jobs, a lost worker). */
  log?: Log;
  /** `runpod` engines: a job asked for the worker to stop (`stopPod`), or the Python worker was lost. */
  onStopRequested?: RunPodEngineOptions["onStopRequested"];
  onLost?: RunPodEngineOptions["onLost"];
}

/** The embedded engine runs with this Node and this checkout's entry file, through tsx like the worker itself. */
export const EMBEDDED_ENGINE = {
  node: process.execPath,
  execArgv: ["--import", "tsx"],
  entry: fileURLToPath(new URL("./embedded/main.ts", import.meta.url)),
};

/** The one place that maps an endpoint's engine spec to an implementation. */
export function createEngine(spec: EngineSpec, options: CreateEngineOptions): Engine {
  switch (spec.kind) {
    case "handler":
      return new HandlerEngine({ module: spec.module, handlerDirs: options.handlerDirs, ...(options.endpointEnv && { env: options.endpointEnv }) });
    case "openai":
      return new OpenAIEngine({
        spec,
        models: options.models,
        embedded: EMBEDDED_ENGINE,
        ...(options.engineUser && { runAs: options.engineUser }),
        ...(options.endpointEnv && { endpointEnv: options.endpointEnv }),
        ...(options.onEngineLog && { onLog: options.onEngineLog }),
        ...(options.onEngineState && { onState: options.onEngineState }),
      });
    case "runpod": {
      const { env: _env, ...runpod } = spec;
      return new RunPodEngine({
        spec: runpod,
        endpointId: options.endpointId,
        workerId: options.workerId,
        handlerDirs: options.handlerDirs,
        ...(options.engineUser && { runAs: options.engineUser }),
        ...(options.endpointEnv && { endpointEnv: options.endpointEnv }),
        ...(options.onEngineLog && { onLog: options.onEngineLog }),
        ...(options.log && { log: options.log }),
        ...(options.onStopRequested && { onStopRequested: options.onStopRequested }),
        ...(options.onLost && { onLost: options.onLost }),
      });
    }
  }
}
