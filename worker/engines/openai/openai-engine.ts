import { createServer } from "node:net";
import type { OpenAIEngineSpec } from "../../../core/contracts/endpoint.ts";
import { engineCommand, type EngineLaunch } from "../../../core/engine/engine-profiles.ts";
import { engineEnvironment } from "../../../core/engine/engine-environment.ts";
import { openAIErrorType, type EngineRefusal } from "../../../core/contracts/openai-error.ts";
import { chunkText, isObject, toEngineRequest, tokensChunk, usageOf, type EngineRequest, type OpenAIUsage } from "../../../core/engine/openai-job-input.ts";
import { servedModelName } from "../../../core/engine/served-model-name.ts";
import { TokenTiming } from "../../../core/engine/token-timing.ts";
import type { GenerationStats } from "../../../core/queue/job-catalog.ts";
import { EngineStartError, type Engine, type EngineInfo, type EngineJob, type EngineResult } from "../engine.ts";
import { EngineSupervisor, type SupervisorState } from "./engine-supervisor.ts";
import { createEngineHome, type EngineHome } from "./engine-home.ts";
import { assertReadableBy, type EngineUser } from "./engine-user.ts";
import type { EngineCacheContext, EngineCacheHooks } from "./engine-cache-hooks.ts";
import { sseData } from "./sse-events.ts";
import { EngineConnectionError, engineRequest, type EngineResponse } from "./engine-http.ts";
import { redactUri } from "../../models/model-source.ts";

/** The model URI fit for an error message; an absolute path (or anything unparsable) as it is, without a query. */
function printableModel(model: string): string {
  try {
    return model.startsWith("/") ? model : redactUri(new URL(model));
  } catch {
    return model.split("?")[0]!;
  }
}

export interface OpenAIEngineOptions {
  spec: OpenAIEngineSpec;
  /** Turns the spec's model URI into a local path (downloads s3:// and https:// models). */
  models: { materialise(uri: string, signal?: AbortSignal): Promise<string> };
  /** How to run the embedded engine's entry file with this Node. */
  embedded: NonNullable<EngineLaunch["embedded"]>;
  /** Port of the engine process; default: a free loopback port picked at start. */
  port?: number;
  onLog?: (line: string, stream: "stdout" | "stderr") => void;
  onState?: (state: SupervisorState, detail?: string) => void;
  /** Restart backoff after an engine crash (ms); defaults as EngineSupervisor's. */
  restartBaseMs?: number;
  now?: () => number;
  /**
   * Run the engine process as this user (HEARTH_ENGINE_USER, resolved by worker/main.ts); it must
   * be able to read the model, which is checked before the engine starts. Default: this process's user.
   */
  runAs?: EngineUser;
  /** Environment the allow-list takes the engine's from (core/engine/engine-environment.ts). Default: `process.env`. */
  inheritedEnv?: Readonly<Record<string, string | undefined>>;
  /**
   * Variables the endpoint adds to its engine's environment (its `engine.env`, secrets opened).
   * They never change HOME, TMPDIR, PORT or the profile's own. Default: none.
   */
  endpointEnv?: Readonly<Record<string, string>>;
  /** Engine cache snapshots: restored before the engine starts, archived after its first healthy start. Default none. */
  engineCache?: EngineCacheHooks;
}

/** Raised into a job when the engine process went away under it. */
export class EngineLostError extends Error {
  readonly code = "ENGINE_LOST";
}

/**
 * An engine process serving the OpenAI HTTP API (vLLM, SGLang, TensorRT-LLM, llama-server, or the
 * embedded node-llama-cpp server), supervised: the model is materialised, the process launched
 * from its profile and restarted if it dies. A job is one HTTP request to it (see
 * core/engine/openai-job-input.ts for the input shapes); streamed responses become stream chunks.
 * A job that arrives while the engine restarts waits for it (within the job's own timeout); a job
 * in flight when it dies fails with EngineLostError.
 */
export class OpenAIEngine implements Engine {
  private supervisor: EngineSupervisor | undefined;
  /** The engine serves sleep mode (its profile says so), and whether it sleeps now. */
  private sleepMode = false;
  private asleep = false;
  private home: EngineHome | undefined;
  private servedModelName = "";
  private readyWaiters = new Set<() => void>();
  private readonly now: () => number;

  constructor(private readonly options: OpenAIEngineOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The engine process's pid while one runs (tests kill it). */
  get enginePid(): number | undefined {
    return this.supervisor?.pid;
  }

  get baseUrl(): string | undefined {
    return this.supervisor?.baseUrl;
  }

  async start(): Promise<EngineInfo> {
    const { spec } = this.options;
    let modelPath: string;
    try {
      modelPath = await this.options.models.materialise(spec.model);
    } catch (err) {
      // Redacted: a presigned query or user:password in the URI must not reach the logs.
      throw new EngineStartError(`model ${printableModel(spec.model)} could not be materialised: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const { runAs } = this.options;
    if (runAs !== undefined) {
      try {
        await assertReadableBy(modelPath, runAs);
        if (spec.profile === "embedded") await assertReadableBy(this.options.embedded.entry, runAs);
      } catch (err) {
        throw new EngineStartError(err instanceof Error ? err.message : String(err), { cause: err });
      }
    }
    this.servedModelName = servedModelName(spec);
    const port = this.options.port ?? (await freeLoopbackPort());
    const command = engineCommand({
      profile: spec.profile,
      modelPath,
      port,
      servedModelName: this.servedModelName,
      concurrency: spec.concurrency,
      args: spec.args,
      embedded: this.options.embedded,
    });
    this.sleepMode = command.sleepMode === true;
    this.home = await createEngineHome(runAs);
    const env = engineEnvironment({
      profile: spec.profile,
      inherited: this.options.inheritedEnv ?? process.env,
      home: this.home.path,
      port,
      ...(command.env && { profileEnv: command.env }),
      ...(this.options.endpointEnv && { endpointEnv: this.options.endpointEnv }),
    });
    const cache: EngineCacheContext = { profile: spec.profile, modelPath, env, ...(runAs && { user: runAs }) };
    await this.options.engineCache?.restore(cache);
    this.supervisor = new EngineSupervisor({
      engine: command,
      env,
      ...(runAs && { user: runAs }),
      startupTimeoutMs: spec.startupTimeoutMs,
      ...(this.options.restartBaseMs !== undefined && { restartBaseMs: this.options.restartBaseMs }),
      ...(this.options.onLog && { onLog: this.options.onLog }),
      onState: (state, detail) => {
        if (state === "ready" || state === "stopped") for (const wake of [...this.readyWaiters]) wake();
        this.options.onState?.(state, detail);
      },
    });
    try {
      await this.supervisor.start();
    } catch (err) {
      await this.home.remove().catch(() => {});
      throw new EngineStartError(err instanceof Error ? err.message : String(err), { cause: err });
    }
    this.options.engineCache?.archive(cache);
    // vLLM's worker runs with return_aggregate_stream, so a streamed job's output is all its chunks.
    return { concurrency: spec.concurrency, returnAggregateStream: true };
  }

  async health(): Promise<boolean> {
    return this.supervisor?.current === "ready";
  }

  /** Before a pause: an engine with a sleep mode unloads its model (and frees accelerator memory). */
  async sleep(): Promise<void> {
    if (!this.sleepMode || this.asleep) return;
    await this.sleepCall("/sleep");
    this.asleep = true;
  }

  /** After a resume: loads the model again. */
  async wakeUp(): Promise<void> {
    if (!this.asleep) return;
    await this.sleepCall("/wake_up");
    this.asleep = false;
  }

  private async sleepCall(path: string): Promise<void> {
    const base = this.supervisor?.baseUrl;
    if (!base) throw new Error("no engine runs");
    const res = await fetch(`${base}${path}`, { method: "POST", signal: AbortSignal.timeout(this.options.spec.startupTimeoutMs ?? 600_000) });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`engine ${path} answered ${res.status}`);
  }

  async stop(): Promise<void> {
    await this.options.engineCache?.stop();
    await this.supervisor?.stop();
    await this.home?.remove();
  }

  async run(job: EngineJob, signal: AbortSignal): Promise<EngineResult> {
    const parsed = toEngineRequest(job.input, this.servedModelName);
    if (!parsed.ok) throw new Error(parsed.error);
    const request = parsed.request;
    const supervisor = await this.readySupervisor(signal);
    const startedAt = this.now();
    const lost = supervisor.lost;
    const both = AbortSignal.any([signal, lost]);

    let res: EngineResponse;
    try {
      res = await engineRequest(`${supervisor.baseUrl}${request.route}`, {
        method: request.method,
        signal: both,
        headers: { ...(request.method === "POST" && { "content-type": "application/json" }), ...(job.traceparent && { traceparent: job.traceparent }) },
        ...(request.method === "POST" && { body: JSON.stringify(request.body) }),
      });
    } catch (err) {
      throw await lostOr(lost, err);
    }
    if (!res.ok) return { kind: "value", value: { error: await engineError(res) } };
    if (request.method === "GET" || !request.body.stream) {
      const body: unknown = await res.json().catch(async (err: unknown) => Promise.reject(await lostOr(lost, err)));
      const usage = usageOf(body);
      return { kind: "value", value: body, generation: () => usage && { ...usage } };
    }

    const timing = new TokenTiming(startedAt);
    let usage: OpenAIUsage | undefined;
    const generation = (): GenerationStats => ({ ...timing.stats(), ...(usage ?? { completionTokens: timing.tokens }) });
    const events = this.events(res, lost, (text) => text !== "" && timing.token(this.now()), (u) => (usage = u));

    if (request.shape === "tokens" && !request.stream) {
      let text = "";
      for await (const event of events) text += chunkText(event) ?? "";
      return { kind: "value", value: [tokensChunk(text, usage)], generation };
    }
    return { kind: "stream", chunks: relay(events, request, () => usage), generation };
  }

  /** Parsed SSE events of a streamed response, up to `[DONE]`; an `error` event or a lost engine throws. */
  private async *events(res: EngineResponse, lost: AbortSignal, onText: (text: string) => void, onUsage: (u: OpenAIUsage) => void): AsyncGenerator<Record<string, unknown>> {
    let done = false;
    try {
      for await (const data of sseData(res.body)) {
        if (data === "[DONE]") {
          done = true;
          return;
        }
        const event = JSON.parse(data) as Record<string, unknown>;
        if (event.error !== undefined) throw new Error(`engine error: ${errorText(event.error)}`);
        const text = chunkText(event);
        if (text !== undefined) onText(text);
        const u = usageOf(event);
        if (u) onUsage(u);
        yield event;
      }
    } catch (err) {
      throw await lostOr(lost, err);
    } finally {
      // After [DONE] only the answer's end is left: read it, and the connection serves the next job.
      // Anything else (an abort, an error, a consumer gone) closes it, which stops the engine's generation.
      if (done) res.release();
      else res.destroy();
    }
  }

  /** The supervisor once its engine is ready: waits out a restart, or gives up when the job is aborted. */
  private async readySupervisor(signal: AbortSignal): Promise<EngineSupervisor> {
    const supervisor = this.supervisor;
    if (!supervisor) throw new Error("engine not started");
    while (supervisor.current !== "ready") {
      if (supervisor.current === "stopped") throw new Error("engine stopped");
      signal.throwIfAborted();
      await new Promise<void>((resolve) => {
        const done = () => {
          this.readyWaiters.delete(done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.readyWaiters.add(done);
        signal.addEventListener("abort", done, { once: true });
      });
    }
    return supervisor;
  }
}

/** Chunks a streamed job yields: the engine's own events (passthrough) or worker-vllm's token chunks. */
async function* relay(events: AsyncIterable<Record<string, unknown>>, request: Extract<EngineRequest, { method: "POST" }>, usage: () => OpenAIUsage | undefined): AsyncGenerator<unknown> {
  for await (const event of events) {
    if (request.shape === "openai") {
      // The usage-only chunk was asked for by us (for the record), not by the caller: keep it back.
      const usageOnly = Array.isArray(event.choices) && event.choices.length === 0 && event.usage !== undefined;
      if (!usageOnly || request.callerWantsUsage) yield event;
      continue;
    }
    const text = chunkText(event);
    if (text) yield tokensChunk(text);
  }
  const u = usage();
  if (request.shape === "tokens" && u) yield tokensChunk("", u);
}

/** The engine's error answer as the refusal the API relays with the engine's own status. */
async function engineError(res: EngineResponse): Promise<EngineRefusal> {
  const text = await res.text().catch(() => "");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const inner = isObject(parsed) && isObject(parsed.error) ? parsed.error : isObject(parsed) ? parsed : { message: text || res.statusText };
  const optional = (v: unknown) => (v === undefined || v === null ? null : String(v));
  return {
    message: typeof inner.message === "string" ? inner.message : JSON.stringify(inner),
    type: typeof inner.type === "string" ? inner.type : openAIErrorType(res.status),
    code: optional(inner.code),
    param: optional(inner.param),
    status: res.status,
  };
}

/**
 * The error to raise for a failed request: EngineLostError when the engine process died. A killed
 * engine's socket usually closes before its exit is reported, so a connection error waits a moment
 * for the exit before it is taken as the request's own failure.
 */
async function lostOr(lost: AbortSignal, err: unknown): Promise<unknown> {
  if (!lost.aborted && isConnectionError(err)) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2000);
      lost.addEventListener("abort", () => (clearTimeout(timer), resolve()), { once: true });
    });
  }
  if (!lost.aborted) return err;
  const why = lost.reason instanceof Error ? lost.reason.message : String(lost.reason);
  return new EngineLostError(`the engine failed during the request (${why}); it is being restarted`);
}

function isConnectionError(err: unknown): boolean {
  return err instanceof EngineConnectionError;
}

function errorText(error: unknown): string {
  if (typeof error === "string") return error;
  if (isObject(error) && typeof error.message === "string") return error.message;
  return JSON.stringify(error);
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

