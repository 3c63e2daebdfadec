import type { EngineSpec } from "../../core/contracts/endpoint.ts";
import { builtEntryPath, requireBuiltEntry } from "../../core/build/built-entry.ts";
import type { Engine } from "./engine.ts";
import type { OpenAIEngineOptions } from "./openai/openai-engine.ts";
import type { EngineUser } from "./openai/engine-user.ts";
import type { RunPodEngineOptions } from "./runpod/runpod-engine.ts";
import type { Log } from "../../core/log/process-log.ts";

export interface CreateEngineOptions {
  /** `HEARTH_HANDLER_DIRS`: where handler modules may live. */
  handlerDirs: readonly string[];
  /** Materialises `openai` engines' models (file://, s3://, https://); required for them alone. */
  models?: OpenAIEngineOptions["models"];
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
  /** `openai` engines: engine cache snapshots (worker/engine-cache). Default none. */
  engineCache?: OpenAIEngineOptions["engineCache"];
}

const EMBEDDED_SOURCE = "worker/engines/embedded/main.ts";

/**
 * The embedded engine runs with this Node from this checkout's build of its entry
 * (dist/worker/engines/embedded/main.js, `npm run build`): plain JavaScript, no TypeScript loader.
 */
export const EMBEDDED_ENGINE = {
  node: process.execPath,
  execArgv: [] as string[],
  entry: builtEntryPath(EMBEDDED_SOURCE),
};

/**
 * The one place that maps an endpoint's engine spec to an implementation. Each kind's module is
 * imported here, on demand, so a worker loads its own engine's code and dependencies alone (a
 * handler worker never reads the OpenAI supervisor or the RunPod gateway). Throws
 * BuildMissingError for an embedded engine whose build is missing.
 */
export async function createEngine(spec: EngineSpec, options: CreateEngineOptions): Promise<Engine> {
  switch (spec.kind) {
    case "handler": {
      const { HandlerEngine } = await import("./handler-engine.ts");
      return new HandlerEngine({ module: spec.module, handlerDirs: options.handlerDirs, ...(options.endpointEnv && { env: options.endpointEnv }) });
    }
    case "openai": {
      if (!options.models) throw new Error("an openai engine needs `models`");
      // Checked where it is run, so a missing build fails the engine's start naming `npm run build`.
      const embedded = spec.profile === "embedded" ? { ...EMBEDDED_ENGINE, entry: requireBuiltEntry(EMBEDDED_SOURCE) } : EMBEDDED_ENGINE;
      const { OpenAIEngine } = await import("./openai/openai-engine.ts");
      return new OpenAIEngine({
        spec,
        models: options.models,
        embedded,
        ...(options.engineUser && { runAs: options.engineUser }),
        ...(options.endpointEnv && { endpointEnv: options.endpointEnv }),
        ...(options.onEngineLog && { onLog: options.onEngineLog }),
        ...(options.onEngineState && { onState: options.onEngineState }),
        ...(options.engineCache && { engineCache: options.engineCache }),
      });
    }
    case "runpod": {
      const { env: _env, ...runpod } = spec;
      const { RunPodEngine } = await import("./runpod/runpod-engine.ts");
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

/** Loads every kind's module without creating an engine: a prestarted worker (worker/prestart.ts) does not know its kind yet. */
export function preloadEngines(): Promise<unknown> {
  return Promise.all([import("./handler-engine.ts"), import("./openai/openai-engine.ts"), import("./runpod/runpod-engine.ts")]);
}
