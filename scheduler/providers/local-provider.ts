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
  type PauseOptions,
  type PauseOutcome,
  type ProvidedWorker,
  type Provider,
  type StopOptions,
  type WorkerSpec,
} from "./provider.ts";
import { pauseReply, type PauseReply, type PauseRequest } from "../../core/contracts/pause-messages.ts";
import { groupResidentBytes, processStartTicks } from "./process-group.ts";
import { PrestartedWorkers } from "./prestarted-workers.ts";
import { PausedGroupsFile } from "./paused-groups-file.ts";
import { SIGSTOP_FREEZE, type FreezeStrategy } from "./freeze-strategy.ts";

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
  /**
   * Where this provider lists its paused process groups (HEARTH_DATA_DIR), so that the next scheduler
   * on this host kills what a dead one left frozen (`reclaim`). Default: none, and no worker is
   * paused (`pause` refuses): a frozen worker nobody knows of would never be freed.
   */
  stateDir?: string;
  /**
   * How a paused worker's group is frozen. Default SIGSTOP/SIGCONT (model resident). The CRIU +
   * cuda-checkpoint strategy (criu-freeze.ts) is written against the same interface but not wired
   * or exercised (see there).
   */
  freeze?: FreezeStrategy;
  /**
   * Worker processes kept booted ahead of demand (HEARTH_PRESTARTED_WORKERS; prestarted-workers.ts):
   * a start takes one instead of spawning when one fits. Default 0.
   */
  prestarted?: number;
  /** After a spare is taken, the longest wait before its replacement boots (ms). Default 10_000. */
  prestartRefillMs?: number;
}

interface Child {
  process: ChildProcess;
  info: ProvidedWorker;
  exited: Promise<void>;
  stopping?: Promise<void>;
  /** Start ticks of the worker's process (with its pid, the group's identity on disk). */
  start?: string;
  /** Replies awaited from the worker, oldest first. */
  waiters: Array<{ types: ReadonlyArray<PauseReply["type"]>; resolve: (reply: PauseReply | undefined) => void }>;
  /** A pause or resume in flight: one at a time per worker. */
  transition?: Promise<unknown>;
}

/**
 * Workers as child processes of this one. Each gets an IPC channel it never uses for messages: when
 * this process dies, however abruptly, the channel closes and the worker drains and exits, so a
 * crashed scheduler leaves no orphans.
 *
 * Each worker leads a process group of its own (`detached`), which its engine processes share:
 * once the worker has exited, however it ended, the group is SIGKILLed, so an engine whose worker
 * was killed does not live on. A polite stop signals the worker alone: it drains and then stops
 * its engine itself. A pause freezes the whole group (SIGSTOP) once the worker has said it is ready
 * (over the IPC channel, core/contracts/pause-messages.ts), a resume or a stop thaws it (SIGCONT).
 * A frozen worker cannot see this process die: the paused groups are listed in `stateDir` for the
 * next scheduler to reclaim.
 */
export class LocalProvider implements Provider {
  readonly name = "local";
  private readonly children = new Map<string, Child>();
  private readonly listeners = new Set<ExitListener>();
  private closed = false;

  private readonly log: Log;
  private readonly pausedFile: PausedGroupsFile | undefined;
  private readonly spares: PrestartedWorkers | undefined;

  get pausable(): boolean {
    return this.pausedFile !== undefined;
  }

  constructor(private readonly opts: LocalProviderOptions) {
    this.log = opts.log ?? processLog("scheduler");
    this.pausedFile = opts.stateDir === undefined ? undefined : new PausedGroupsFile(opts.stateDir, opts.redisPrefix);
    // A missing build fails the scheduler's start, saying to run it, not every worker's.
    if (opts.workerEntry === undefined) requireBuiltEntry(WORKER_SOURCE);
    this.spares =
      (opts.prestarted ?? 0) > 0
        ? new PrestartedWorkers({
            count: opts.prestarted!,
            spawn: (env) => this.spawnWorker(env),
            baseEnv: () => this.baseEnv(),
            log: this.log,
            ...(opts.prestartRefillMs !== undefined && { refillAfterMs: opts.prestartRefillMs }),
          })
        : undefined;
  }

  /** A worker process: this repository's build run by plain node, leading a process group of its own, with an IPC channel. */
  private spawnWorker(env: NodeJS.ProcessEnv): ChildProcess {
    // Plain JavaScript (through tsx a worker spent ~1.6 s of a 1.7 s cold start compiling itself).
    // Checked again: a build removed under a running scheduler fails here, saying why.
    const workerEntry = this.opts.workerEntry ?? requireBuiltEntry(WORKER_SOURCE);
    return spawn(process.execPath, [workerEntry], {
      cwd: this.opts.cwd ?? repoRoot,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      env,
      // setsid(): the worker's pid is its group's id, and terminal signals (Ctrl-C) reach the scheduler only.
      detached: true,
    });
  }

  async start(spec: WorkerSpec): Promise<ProvidedWorker> {
    if (this.closed) throw new ProviderClosedError(this.name);
    if (this.children.has(spec.workerId)) throw new Error(`worker ${spec.workerId} is already running`);

    const env = this.envFor(spec);
    // A prestarted process that fits becomes this worker; otherwise one is spawned.
    const spare = this.spares?.take(env);
    const child = spare ?? this.spawnWorker(env);
    const info: ProvidedWorker = { workerId: spec.workerId, endpointId: spec.endpointId, startedAt: Date.now(), state: "running" };
    let markExited!: () => void;
    const entry: Child = { process: child, info, exited: new Promise((r) => (markExited = r)), waiters: [] };
    this.children.set(spec.workerId, entry);
    child.on("message", (raw: unknown) => {
      const parsed = pauseReply.safeParse(raw);
      if (!parsed.success) return;
      const i = entry.waiters.findIndex((w) => w.types.includes(parsed.data.type));
      if (i >= 0) entry.waiters.splice(i, 1)[0]!.resolve(parsed.data);
    });

    this.pipeOutput(spec, "stdout", child.stdout);
    this.pipeOutput(spec, "stderr", child.stderr);
    child.once("exit", (code, signal) => {
      // Whatever the worker left in its group (an engine, the engine's own children) goes with it.
      killGroup(child, "SIGKILL");
      const wasPaused = info.state === "paused";
      info.state = "exited";
      delete info.pausedAt;
      delete info.residentBytes;
      for (const w of entry.waiters.splice(0)) w.resolve(undefined);
      info.exitCode = code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0);
      this.children.delete(spec.workerId);
      if (wasPaused) this.persistPaused();
      for (const listener of this.listeners) {
        try {
          listener({ ...info });
        } catch {
          // A failing listener must not keep the others from hearing about the exit.
        }
      }
      markExited();
    });

    if (spare) {
      entry.start = spare.pid === undefined ? undefined : processStartTicks(spare.pid);
      return { ...info };
    }
    await new Promise<void>((resolve, reject) => {
      child.once("spawn", () => {
        entry.start = child.pid === undefined ? undefined : processStartTicks(child.pid);
        resolve();
      });
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
      // A frozen worker handles its SIGTERM once thawed: it drains (nothing in flight) and exits.
      if (entry.info.state === "paused") this.thaw(entry);
      const kill = setTimeout(() => killGroup(entry.process, "SIGKILL"), options.graceMs);
      try {
        await entry.exited;
      } finally {
        clearTimeout(kill);
      }
    })();
    return entry.stopping;
  }

  async pause(workerId: string, options: PauseOptions): Promise<PauseOutcome> {
    const entry = this.children.get(workerId);
    if (!entry || entry.info.state !== "running" || entry.stopping || entry.transition) return { ok: false, reason: "not a running worker" };
    if (!this.pausedFile) return { ok: false, reason: "no state directory: paused workers could not be reclaimed" };
    if (!entry.process.connected || entry.process.pid === undefined || entry.start === undefined) return { ok: false, reason: "no IPC channel" };
    const pgid = entry.process.pid;
    const run = (async (): Promise<PauseOutcome> => {
      const reply = await this.ask(entry, { type: "hearth:pause" }, ["hearth:paused", "hearth:pause-refused"], options.timeoutMs);
      if (reply?.type === "hearth:pause-refused") return { ok: false, reason: reply.reason };
      if (reply?.type !== "hearth:paused" || entry.stopping || entry.info.state !== "running") {
        // Late or interrupted: whatever the worker did, it takes jobs again.
        if (reply === undefined && entry.info.state === "running") this.send(entry, { type: "hearth:resume" });
        return { ok: false, reason: reply === undefined ? "the worker did not answer in time" : "stopped meanwhile" };
      }
      entry.info.state = "paused";
      entry.info.pausedAt = Date.now();
      // Listed before it is frozen: a scheduler that dies from here on leaves it to its successor.
      this.persistPaused();
      await (this.opts.freeze ?? SIGSTOP_FREEZE).freeze(pgid);
      entry.info.residentBytes = groupResidentBytes(pgid);
      return { ok: true };
    })();
    entry.transition = run;
    try {
      return await run;
    } finally {
      entry.transition = undefined;
    }
  }

  async resume(workerId: string, options: PauseOptions): Promise<PauseOutcome> {
    const entry = this.children.get(workerId);
    if (!entry || entry.info.state !== "paused" || entry.stopping || entry.transition) return { ok: false, reason: "not a paused worker" };
    const run = (async (): Promise<PauseOutcome> => {
      this.thaw(entry);
      const reply = await this.ask(entry, { type: "hearth:resume" }, ["hearth:resumed"], options.timeoutMs);
      return reply ? { ok: true } : { ok: false, reason: "the worker did not answer in time" };
    })();
    entry.transition = run;
    try {
      return await run;
    } finally {
      entry.transition = undefined;
    }
  }

  async reclaim(): Promise<Array<Pick<ProvidedWorker, "workerId" | "endpointId">>> {
    const reaped = this.pausedFile?.reapOrphans() ?? [];
    for (const g of reaped) this.log({ level: "warn", msg: "paused worker of a scheduler that is gone killed", workerId: g.workerId, endpointId: g.endpointId, pgid: g.pgid });
    // Sessions of another installation (another Redis prefix) are not ours to close.
    return reaped.filter((g) => g.redisPrefix === this.opts.redisPrefix).map(({ workerId, endpointId }) => ({ workerId, endpointId }));
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
    this.spares?.close();
    const graceMs = this.opts.closeGraceMs ?? 40_000;
    await Promise.all([...this.children.keys()].map((id) => this.stop(id, { graceMs })));
  }

  /** Thaws the whole group (SIGCONT by default); the worker is no longer in the pool. */
  private thaw(entry: Child): void {
    // The default thaw is synchronous underneath (a signal): a failure is the group being gone, which its exit reports.
    if (entry.process.pid !== undefined) void (this.opts.freeze ?? SIGSTOP_FREEZE).thaw(entry.process.pid).catch(() => {});
    entry.info.state = "running";
    delete entry.info.pausedAt;
    delete entry.info.residentBytes;
    this.persistPaused();
  }

  private persistPaused(): void {
    if (!this.pausedFile) return;
    const groups = [...this.children.values()].flatMap((c) =>
      c.info.state === "paused" && c.process.pid !== undefined && c.start !== undefined
        ? [{ pgid: c.process.pid, start: c.start, workerId: c.info.workerId, endpointId: c.info.endpointId }]
        : [],
    );
    try {
      this.pausedFile.write(groups);
    } catch (err) {
      this.log({ level: "error", msg: "paused workers list not written", error: (err as Error).message });
    }
  }

  private send(entry: Child, message: PauseRequest): boolean {
    try {
      return entry.process.connected && entry.process.send(message);
    } catch {
      return false; // the channel closed meanwhile: the exit follows
    }
  }

  /** Sends `message` and waits for the first reply of one of `types`; undefined on timeout or exit. */
  private ask(entry: Child, message: PauseRequest, types: ReadonlyArray<PauseReply["type"]>, timeoutMs: number): Promise<PauseReply | undefined> {
    return new Promise((resolve) => {
      const waiter = {
        types,
        resolve: (reply: PauseReply | undefined) => {
          clearTimeout(timer);
          resolve(reply);
        },
      };
      const timer = setTimeout(() => {
        const i = entry.waiters.indexOf(waiter);
        if (i >= 0) entry.waiters.splice(i, 1);
        resolve(undefined);
      }, timeoutMs);
      entry.waiters.push(waiter);
      if (!this.send(entry, message)) waiter.resolve(undefined);
    });
  }

  /** What every worker of this provider gets, whatever its endpoint: all a prestarted process boots with. */
  private baseEnv(): Record<string, string> {
    // An allow-list: workers run tenants' code, and never get this process's secrets (Postgres, admin token, cloud keys).
    return { ...workerEnvironment(this.opts.inheritEnv ?? process.env), ...this.providerSettings() };
  }

  /** This provider's own settings, the same for all its workers; an endpoint's `env` cannot change them. */
  private providerSettings(): Record<string, string> {
    return {
      HEARTH_REDIS_PREFIX: this.opts.redisPrefix,
      HEARTH_HANDLER_DIRS: this.opts.handlerDirs.join(":"),
      HEARTH_WORKER_LOCK_MS: String(this.opts.workerLockMs),
      HEARTH_WORKER_METRICS: this.opts.workerMetrics ? "on" : "off",
    };
  }

  private envFor(spec: WorkerSpec): Record<string, string> {
    return {
      ...workerEnvironment(this.opts.inheritEnv ?? process.env),
      ...spec.env,
      ...this.providerSettings(),
      REDIS_URL: spec.redisUrl ?? this.opts.redisUrl,
      HEARTH_ENDPOINT_ID: spec.endpointId,
      HEARTH_WORKER_ID: spec.workerId,
      HEARTH_ENGINE: JSON.stringify(spec.engine),
      HEARTH_EXECUTION_TIMEOUT_MS: String(spec.executionTimeoutMs),
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
