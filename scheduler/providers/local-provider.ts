import { spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:os";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import { requireBuiltEntry } from "../../core/build/built-entry.ts";
import { workerEnvironment } from "../../core/config/worker-environment.ts";
import { processLog, withFields, type Log } from "../../core/log/process-log.ts";
import {
  ProviderClosedError,
  type ExitListener,
  type ProvidedWorker,
  type Provider,
  type StopOptions,
  type WorkerSpec,
} from "./provider.ts";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));
/** The worker's source entry; workers run its build (dist/worker/main.js), never through a TypeScript loader. */
const WORKER_SOURCE = "worker/main.ts";

export interface LocalProviderOptions {
  redisUrl: string;
  redisPrefix: string;
  /** Directories whose handler modules workers may load (HEARTH_HANDLER_DIRS). */
  handlerDirs: string[];
  /** BullMQ lock duration handed to workers: how long a dead worker's job waits before it is re-run. */
  workerLockMs: number;
  /**
   * Absolute path of the worker entry, a JavaScript file run by plain `node`. Default: this
   * repository's build of worker/main.ts, `dist/worker/main.js` (`npm run build`); without it the
   * constructor throws BuildMissingError, saying to run the build.
   */
  workerEntry?: string;
  /** Working directory of workers. Default: the repository root. */
  cwd?: string;
  /**
   * Environment whose allow-listed part workers inherit beneath the Hearth variables (PATH, HOME,
   * CUDA_VISIBLE_DEVICES, the worker settings…; see core/config/worker-environment.ts): never
   * DATABASE_URL, HEARTH_ADMIN_TOKEN, AWS_* or anything else not listed. Default: this process's environment.
   */
  inheritEnv?: NodeJS.ProcessEnv;
  /**
   * "forward" (default): a worker's JSON lines (its pino log, which names the worker) go to this
   * process's stdout unchanged, and any other line (a crash's stack, a handler writing to stdout
   * itself) is logged through `log` with the worker's ids; "silent": dropped.
   */
  output?: "forward" | "silent";
  /** Where a worker's non-JSON lines are logged; default this process's log. */
  log?: Log;
  /** Every line of every worker, whatever `output` says (the scheduler keeps them for the logs routes). */
  onOutput?: (worker: { endpointId: string; workerId: string }, stream: "stdout" | "stderr", line: string) => void;
  /** Drain allowance per worker when `close()` stops them all. Default 40_000 (a worker's default drain is 30 s). */
  closeGraceMs?: number;
  /**
   * Workers serve `/metrics` on a loopback port the OS picks and report it in their heartbeat
   * (HEARTH_WORKER_METRICS=on); the scheduler lists it for Prometheus. Default false: off, whatever
   * this process's environment says.
   */
  workerMetrics?: boolean;
}

interface Child {
  process: ChildProcess;
  info: ProvidedWorker;
  exited: Promise<void>;
  stopping?: Promise<void>;
}

/**
 * Workers as child processes of this one. Each gets an IPC channel it never uses for messages: when
 * this process dies, however abruptly, the channel closes and the worker drains and exits, so a
 * crashed scheduler leaves no orphans.
 *
 * Each worker leads a process group of its own (`detached`), which its engine processes share:
 * once the worker has exited, however it ended, the group is SIGKILLed, so an engine whose worker
 * was killed does not live on. A polite stop signals the worker alone: it drains and then stops
 * its engine itself.
 */
export class LocalProvider implements Provider {
  readonly name = "local";
  private readonly children = new Map<string, Child>();
  private readonly listeners = new Set<ExitListener>();
  private closed = false;

  private readonly log: Log;

  constructor(private readonly opts: LocalProviderOptions) {
    this.log = opts.log ?? processLog("scheduler");
    // A missing build fails the scheduler's start, saying to run it, not every worker's.
    if (opts.workerEntry === undefined) requireBuiltEntry(WORKER_SOURCE);
  }

  async start(spec: WorkerSpec): Promise<ProvidedWorker> {
    if (this.closed) throw new ProviderClosedError(this.name);
    if (this.children.has(spec.workerId)) throw new Error(`worker ${spec.workerId} is already running`);

    // Plain JavaScript (through tsx a worker spent ~1.6 s of a 1.7 s cold start compiling itself).
    // Checked again: a build removed under a running scheduler fails here, saying why.
    const workerEntry = this.opts.workerEntry ?? requireBuiltEntry(WORKER_SOURCE);
    const child = spawn(process.execPath, [workerEntry], {
      cwd: this.opts.cwd ?? repoRoot,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      env: this.envFor(spec),
      // setsid(): the worker's pid is its group's id, and terminal signals (Ctrl-C) reach the scheduler only.
      detached: true,
    });
    const info: ProvidedWorker = { workerId: spec.workerId, endpointId: spec.endpointId, startedAt: Date.now(), state: "running" };
    let markExited!: () => void;
    const entry: Child = { process: child, info, exited: new Promise((r) => (markExited = r)) };
    this.children.set(spec.workerId, entry);

    this.pipeOutput(spec, "stdout", child.stdout);
    this.pipeOutput(spec, "stderr", child.stderr);
    child.once("exit", (code, signal) => {
      // Whatever the worker left in its group (an engine, the engine's own children) goes with it.
      killGroup(child, "SIGKILL");
      info.state = "exited";
      info.exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
      this.children.delete(spec.workerId);
      for (const listener of this.listeners) {
        try {
          listener({ ...info });
        } catch {
          // A failing listener must not keep the others from hearing about the exit.
        }
      }
      markExited();
    });

    await new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      // Kept for the child's whole life: an 'error' event without a listener would crash this process.
      child.on("error", (err) => {
        // A failed spawn has no exit event: forget the worker here. Later errors (a failed kill) change nothing.
        if (child.pid === undefined) {
          this.children.delete(spec.workerId);
          markExited();
          reject(err);
        }
      });
    });
    return { ...info };
  }

  stop(workerId: string, options: StopOptions): Promise<void> {
    const entry = this.children.get(workerId);
    if (!entry) return Promise.resolve();
    entry.stopping ??= (async () => {
      entry.process.kill("SIGTERM");
      const kill = setTimeout(() => killGroup(entry.process, "SIGKILL"), options.graceMs);
      try {
        await entry.exited;
      } finally {
        clearTimeout(kill);
      }
    })();
    return entry.stopping;
  }

  list(): ProvidedWorker[] {
    return [...this.children.values()].map((c) => ({ ...c.info }));
  }

  onExit(listener: ExitListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    const graceMs = this.opts.closeGraceMs ?? 40_000;
    await Promise.all([...this.children.keys()].map((id) => this.stop(id, { graceMs })));
  }

  private envFor(spec: WorkerSpec): NodeJS.ProcessEnv {
    // An allow-list: workers run tenants' code, and never get this process's secrets (Postgres, admin token, cloud keys).
    return {
      ...workerEnvironment(this.opts.inheritEnv ?? process.env),
      ...spec.env,
      REDIS_URL: spec.redisUrl ?? this.opts.redisUrl,
      HEARTH_REDIS_PREFIX: this.opts.redisPrefix,
      HEARTH_HANDLER_DIRS: this.opts.handlerDirs.join(":"),
      HEARTH_ENDPOINT_ID: spec.endpointId,
      HEARTH_WORKER_ID: spec.workerId,
      HEARTH_ENGINE: JSON.stringify(spec.engine),
      HEARTH_EXECUTION_TIMEOUT_MS: String(spec.executionTimeoutMs),
      HEARTH_WORKER_LOCK_MS: String(this.opts.workerLockMs),
      HEARTH_WORKER_METRICS: this.opts.workerMetrics ? "on" : "off",
    };
  }

  private pipeOutput(spec: WorkerSpec, stream: "stdout" | "stderr", from: Readable | null): void {
    if (!from) return;
    const { onOutput } = this.opts;
    const forward = this.opts.output !== "silent";
    if (!forward && !onOutput) {
      from.resume(); // keep draining the pipe, or a chatty worker blocks on a full buffer
      return;
    }
    const worker = { workerId: spec.workerId, endpointId: spec.endpointId };
    const log = withFields(this.log, { ...worker, stream });
    createInterface({ input: from, crlfDelay: Infinity }).on("line", (line) => {
      onOutput?.(worker, stream, line);
      if (!forward) return;
      if (isJsonObjectLine(line)) process.stdout.write(`${line}\n`);
      else log({ msg: "worker output", line });
    });
  }
}

/** A line that is already one JSON object (a pino line): cheap test, no parse. */
function isJsonObjectLine(line: string): boolean {
  return line.startsWith("{") && line.endsWith("}");
}

/** Signals the process group a worker leads; a group already empty (ESRCH) is fine. */
function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") child.kill(signal);
  }
}
