import { pathToFileURL } from "node:url";
import { z } from "zod";
import { resolveHandlerModule } from "../../core/engine/handler-module-path.ts";
import { EngineStartError, type Engine, type EngineInfo, type EngineJob, type EngineResult } from "./engine.ts";

/**
 * What a handler module's default export is called with. The job is RunPod's job dict
 * (`{ id, input }`); the abort signal travels in a second argument rather than on the job, so a
 * handler that logs or returns its job never leaks a non-serialisable object.
 */
export interface HandlerContext {
  /** Fires on cancel, execution timeout, TTL expiry and worker drain; stop work when it does. */
  signal: AbortSignal;
}

export type HandlerFunction = (job: EngineJob, context: HandlerContext) => unknown;

/**
 * Optional named exports of a handler module, RunPod's `concurrency_modifier` and
 * `return_aggregate_stream` as constants.
 */
const handlerExports = z.object({
  default: z.custom<HandlerFunction>((v) => typeof v === "function", "the default export must be a function"),
  concurrency: z.number().int().min(1).max(1024).default(1),
  returnAggregateStream: z.boolean().default(false),
});

export interface HandlerEngineOptions {
  /** Absolute path or file:// URL of the handler module. */
  module: string;
  /** Directories the module must resolve inside (symlinks and `..` included); anything else is refused. */
  handlerDirs: readonly string[];
  /**
   * The endpoint's own variables (`engine.env`): set in process.env before the module loads, since
   * the handler runs in this process and reads them there (HF_TOKEN, LOG_LEVEL…). Default none.
   */
  env?: Readonly<Record<string, string>>;
}

/**
 * Runs a handler module in this process (RunPod handler semantics). A default export that is an
 * async generator function, or that returns any async iterable or generator, is a streaming
 * handler: each yield is a stream chunk. Anything else is awaited and its value is the output.
 */
export class HandlerEngine implements Engine {
  private handler: HandlerFunction | undefined;

  constructor(private readonly options: HandlerEngineOptions) {}

  async start(): Promise<EngineInfo> {
    const resolved = await resolveHandlerModule(this.options.module, this.options.handlerDirs);
    if (!resolved.ok) throw new EngineStartError(`handler ${this.options.module} refused: ${resolved.reason}`);
    Object.assign(process.env, this.options.env);
    let mod: unknown;
    try {
      mod = await import(pathToFileURL(resolved.path).href);
    } catch (err) {
      throw new EngineStartError(`handler ${resolved.path} failed to load: ${errorMessage(err)}`, { cause: err });
    }
    const parsed = handlerExports.safeParse(mod);
    if (!parsed.success) {
      const why = parsed.error.issues.map((i) => `${i.path.join(".") || "module"}: ${i.message}`).join("; ");
      throw new EngineStartError(`handler ${resolved.path} has invalid exports: ${why}`);
    }
    this.handler = parsed.data.default;
    return { concurrency: parsed.data.concurrency, returnAggregateStream: parsed.data.returnAggregateStream };
  }

  async health(): Promise<boolean> {
    return this.handler !== undefined;
  }

  async run(job: EngineJob, signal: AbortSignal): Promise<EngineResult> {
    const handler = this.handler;
    if (handler === undefined) throw new Error("handler engine is not started");
    const returned = handler({ id: job.id, input: job.input }, { signal });
    // Check before awaiting: an async generator object is not a promise, and awaiting it is harmless,
    // but a sync generator must be recognised as a stream before anything else looks at it.
    const value = isStream(returned) ? returned : await returned;
    if (isStream(value)) return { kind: "stream", chunks: toAsyncIterable(value) };
    return { kind: "value", value };
  }

  async stop(): Promise<void> {
    this.handler = undefined;
  }
}

function isStream(v: unknown): v is AsyncIterable<unknown> | Generator<unknown> {
  if (v === null || typeof v !== "object") return false;
  if (Symbol.asyncIterator in v) return true;
  // Sync generators count (RunPod accepts them); arrays and other plain iterables are values.
  return Object.prototype.toString.call(v) === "[object Generator]";
}

function toAsyncIterable(v: AsyncIterable<unknown> | Generator<unknown>): AsyncIterable<unknown> {
  if (Symbol.asyncIterator in v) return v;
  return (async function* () {
    yield* v;
  })();
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
