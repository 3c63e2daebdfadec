import { spawn, type ChildProcess } from "node:child_process";
import { stopChild } from "../stop-child.ts";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { createInterface } from "node:readline";
import type { RunPodEngineSpec } from "../../../core/contracts/endpoint.ts";
import { engineEnvironment } from "../../../core/engine/engine-environment.ts";
import { resolveHandlerDir } from "../../../core/engine/handler-module-path.ts";
import { RUNPOD_PING_INTERVAL_MS, runpodWorkerEnv } from "../../../core/engine/runpod-protocol.ts";
import type { Log } from "../../../core/log/process-log.ts";
import { EngineStartError, type Engine, type EngineInfo, type EngineJob, type EngineResult } from "../engine.ts";
import { createEngineHome, type EngineHome } from "../openai/engine-home.ts";
import { assertReadableBy, type EngineUser } from "../openai/engine-user.ts";
import { ChunkQueue } from "./chunk-queue.ts";
import { JobBook, type JobSink } from "./job-book.ts";
import { startWorkerGateway, type WorkerGateway } from "./worker-gateway.ts";

export interface RunPodEngineOptions {
  /** The endpoint's `runpod` engine, without its variables (they come as `endpointEnv`). */
  spec: Omit<RunPodEngineSpec, "env">;
  endpointId: string;
  workerId: string;
  /** `HEARTH_HANDLER_DIRS`: `cwd` must lie inside one (checked again here, on the real path). */
  handlerDirs: readonly string[];
  /** The endpoint's own variables, secrets opened. */
  endpointEnv?: Readonly<Record<string, string>>;
  /** Run the worker as this user (the Hearth worker must be root). Default: this process's user. */
  runAs?: EngineUser;
  /** The environment the allow-listed part is taken from. Default `process.env`. */
  inherited?: Readonly<Record<string, string | undefined>>;
  /** RUNPOD_PING_INTERVAL given to the worker (ms); it is lost after three intervals without a ping. Default RunPod's 10000. */
  pingIntervalMs?: number;
  /** How long the gateway holds an empty take or stop poll (ms). Default 30000. */
  holdMs?: number;
  /** Between SIGTERM and SIGKILL when the worker is stopped (ms). Default 10000. */
  stopGraceMs?: number;
  /** Each line the worker prints. Default: this process's stderr. */
  onLog?: (line: string, stream: "stdout" | "stderr") => void;
  /** The Hearth worker's log: tracebacks of failed jobs (with their jobId), lost pings. Default none. */
  log?: Log;
  /** A job-done said `stopPod: true`: the Hearth worker should drain and exit. */
  onStopRequested?: (reason: string) => void;
  /**
   * The worker process died or stopped pinging after it was up. The jobs it held cannot finish
   * here: the Hearth worker should exit at once, leaving them locked, so that BullMQ runs them
   * again elsewhere once their locks lapse (as for a worker that was SIGKILLed).
   */
  onLost?: (reason: string) => void;
}

/** Last lines of the worker's stderr kept for a start failure's message. */
const STDERR_LINES = 20;

/**
 * A RunPod serverless worker (`runpod.serverless.start(...)`, Python, unmodified) behind the
 * Engine seam: the command runs in its folder with a clean environment, as the engine user, in
 * this worker's process group, and speaks RunPod's worker protocol to a gateway of this Hearth
 * worker on a loopback port (worker-gateway.ts). The Hearth worker keeps doing what it does for
 * every engine (BullMQ takes and locks, cancels, timeouts, streams, metering); each job it runs is
 * handed to the Python worker on its next take, and its job-done or stream posts are the result.
 */
export class RunPodEngine implements Engine {
  private readonly book = new JobBook();
  private gateway: WorkerGateway | undefined;
  private home: EngineHome | undefined;
  private child: ChildProcess | undefined;
  private stopping = false;
  /** A job asked for this worker to stop (`stopPod`): it is draining, and may exit before being told to. */
  private retiring = false;
  private up = false;
  private lastPing = 0;
  private pingTimer: NodeJS.Timeout | undefined;
  private readonly stderrTail: string[] = [];
  private readonly pingIntervalMs: number;

  constructor(private readonly options: RunPodEngineOptions) {
    this.pingIntervalMs = options.pingIntervalMs ?? RUNPOD_PING_INTERVAL_MS;
  }

  async start(): Promise<EngineInfo> {
    const { spec, runAs } = this.options;
    const dir = await resolveHandlerDir(spec.cwd, this.options.handlerDirs);
    if (!dir.ok) throw new EngineStartError(`engine.cwd: ${dir.reason}`);
    if (runAs !== undefined) await assertReadableBy(dir.path, runAs).catch((err: Error) => Promise.reject(new EngineStartError(err.message)));

    let firstTake: () => void = () => {};
    const tookFirst = new Promise<void>((resolve) => (firstTake = resolve));
    const token = randomBytes(32).toString("base64url");
    this.gateway = await startWorkerGateway({
      endpointId: this.options.endpointId,
      workerId: this.options.workerId,
      token,
      book: this.book,
      concurrency: spec.concurrency,
      ...(this.options.holdMs !== undefined && { holdMs: this.options.holdMs }),
      onTake: () => firstTake(),
      onPing: (ping) => {
        this.lastPing = Date.now();
        if (ping.unhealthy) this.options.log?.({ level: "warn", msg: "runpod worker reported unhealthy", check: ping.unhealthy.check, reason: ping.unhealthy.reason.slice(0, 500) });
      },
      onStopPod: () => {
        // The SDK may exit on its own after such a job (config refresh_worker): expected, not lost.
        this.retiring = true;
        this.options.onStopRequested?.("stopPod");
      },
      onTraceback: (jobId, traceback) => this.options.log?.({ level: "warn", msg: "job raised", jobId, traceback: traceback.slice(-8192) }),
    });
    this.home = await createEngineHome(runAs);

    const withoutGpu = !existsSync("/dev/nvidiactl");
    const env = {
      ...engineEnvironment({ profile: "runpod", inherited: this.options.inherited ?? process.env, home: this.home.path, ...(this.options.endpointEnv && { endpointEnv: this.options.endpointEnv }) }),
      // Last, so nothing else can set them (the API refuses them in engine.env too).
      ...runpodWorkerEnv({
        gatewayOrigin: this.gateway.origin,
        endpointId: this.options.endpointId,
        workerId: this.options.workerId,
        token,
        pingIntervalMs: this.pingIntervalMs,
        gpu: withoutGpu ? "cpu" : "gpu",
        hostname: hostname(),
        withoutGpu,
      }),
    };
    const [command, ...args] = spec.command;
    // Not detached: the worker stays in this process's group, which the provider kills whole once we are gone.
    const child = spawn(command!, args, { cwd: dir.path, env, stdio: ["ignore", "pipe", "pipe"], ...(runAs && { uid: runAs.uid, gid: runAs.gid }) });
    this.child = child;
    const killOnExit = () => child.kill("SIGKILL");
    process.once("exit", killOnExit);
    const log = this.options.onLog ?? ((line, stream) => process.stderr.write(`[runpod ${stream}] ${line}\n`));
    createInterface({ input: child.stdout! }).on("line", (l) => log(l, "stdout"));
    createInterface({ input: child.stderr! }).on("line", (l) => {
      this.stderrTail.push(l.slice(0, 1000));
      if (this.stderrTail.length > STDERR_LINES) this.stderrTail.shift();
      log(l, "stderr");
    });
    const exited = new Promise<string>((resolve) => {
      child.once("error", (err) => resolve(`could not start ${command}: ${err.message}`));
      child.once("exit", (code, signal) => resolve(`exited (${signal ?? `code ${code}`})`));
    });
    void exited.then((how) => {
      process.off("exit", killOnExit);
      if (this.up && !this.stopping && !this.retiring) this.lose(`the worker process ${how}`);
      // Nothing more can be taken; held polls of a retiring worker end now.
      this.book.close();
    });

    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), spec.startupTimeoutMs)));
    const outcome = await Promise.race([tookFirst.then(() => "up" as const), exited, timedOut]);
    clearTimeout(timer);
    if (outcome !== "up") {
      child.kill("SIGKILL");
      await this.release();
      const why = outcome === "timeout" ? `did not ask for a job within ${spec.startupTimeoutMs} ms` : outcome;
      // The last stderr line first (a traceback ends with its exception): session reasons are cut at 500 characters.
      const last = this.stderrTail.at(-1);
      const tail = last === undefined ? "" : `: ${last}; stderr before it: ${this.stderrTail.slice(-6, -1).join(" | ")}`;
      throw new EngineStartError(`runpod worker ${why} before its first take${tail}`);
    }
    this.up = true;
    this.lastPing = Date.now();
    this.pingTimer = setInterval(() => this.checkPings(), this.pingIntervalMs);
    this.pingTimer.unref();
    return { concurrency: spec.concurrency, returnAggregateStream: false };
  }

  async health(): Promise<boolean> {
    const child = this.child;
    return this.up && child !== undefined && child.exitCode === null && child.signalCode === null && !this.pingsLost();
  }

  run(job: EngineJob, signal: AbortSignal): Promise<EngineResult> {
    return new Promise<EngineResult>((resolve, reject) => {
      let stream: ChunkQueue | undefined;
      let finalOutput: unknown;
      const onAbort = () => {
        // Queued: dropped. Held: named on the worker's stop channel; its later posts are refused.
        this.book.withdraw(job.id);
        stream?.fail(signal.reason);
        reject(signal.reason);
      };
      const sink: JobSink = {
        progress: (output) => job.progress?.(output),
        chunk: (output) => {
          if (!stream) {
            stream = new ChunkQueue();
            resolve({ kind: "stream", chunks: stream, output: () => finalOutput });
          }
          return stream.push(output);
        },
        done: (meaning) => {
          signal.removeEventListener("abort", onAbort);
          if (stream) {
            if (meaning.kind === "failed") stream.fail(new Error(meaning.error));
            else {
              finalOutput = meaning.output;
              stream.end();
            }
          } else if (meaning.kind === "completed") resolve({ kind: "value", value: meaning.output });
          // RunPod: a returned dict's `error` fails the job and the rest of the dict stays its output (valueOutcome).
          else if (isNonEmptyObject(meaning.output)) resolve({ kind: "value", value: { ...meaning.output, error: meaning.error } });
          else reject(new Error(meaning.error));
        },
      };
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
      this.book.add({ id: job.id, input: job.input }, sink);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.pingTimer);
    // Held polls answer at once, so the SDK sees its stop promptly and nothing new is taken.
    this.book.close();
    await stopChild(this.child, this.options.stopGraceMs ?? 10_000);
    await this.release();
  }

  /** Three ping periods without a ping, once up: the worker is hung (or its heartbeat process died). */
  private pingsLost(): boolean {
    return this.up && Date.now() - this.lastPing > 3 * this.pingIntervalMs;
  }

  private checkPings(): void {
    if (this.stopping || this.retiring || !this.pingsLost()) return;
    this.child?.kill("SIGKILL");
    this.lose(`no ping for ${Date.now() - this.lastPing} ms`);
  }

  private lose(reason: string): void {
    if (this.stopping) return;
    this.stopping = true;
    clearInterval(this.pingTimer);
    this.options.log?.({ level: "error", msg: "runpod worker lost", reason, heldJobs: this.book.heldIds });
    this.options.onLost?.(reason);
  }

  private async release(): Promise<void> {
    await this.gateway?.close();
    await this.home?.remove().catch(() => {});
  }
}

function isNonEmptyObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0;
}
