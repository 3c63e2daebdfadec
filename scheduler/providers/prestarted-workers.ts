import type { ChildProcess } from "node:child_process";
import { PRESTARTED_VAR, workerReady, type WorkerAssignment } from "../../core/contracts/prestart-messages.ts";
import type { Log } from "../../core/log/process-log.ts";

export interface PrestartedWorkersOptions {
  /** How many processes to keep booted (HEARTH_PRESTARTED_WORKERS); 0 keeps none. */
  count: number;
  /** Spawns a worker process with this environment, as the provider spawns workers (entry, group, pipes, IPC). */
  spawn: (env: Record<string, string>) => ChildProcess;
  /** The environment every worker of this provider gets whatever its endpoint: what a spare boots with. */
  baseEnv: () => Record<string, string>;
  log: Log;
  /**
   * After a spare is taken, the next one boots a moment after the worker it became says it is ready
   * (or at its exit), so as not to compete with that cold start, nor with the first job it was
   * started for, for the cores; at the latest after this long (ms): a worker downloading its model
   * for minutes must not leave the pool empty meanwhile. Default 10_000.
   */
  refillAfterMs?: number;
}

/**
 * From a taken spare's ready message to its replacement's boot (ms): the job that started it
 * usually runs in this window (an LLM's first token about 60 ms after ready here); booting beside
 * it (about 0.4 s of CPU with its preloads) added 30–40 ms to that job on 2 cores. Not much longer:
 * a spare still booting when the next start takes it loads its modules beside that start's engine.
 */
const AFTER_READY_MS = 200;
/** A spare that dies this soon after its spawn counts as a failed boot (ms). */
const FAILED_BOOT_MS = 5000;
/** Failed boots in a row after which the pool stops booting spares (a broken build, a bad NODE_OPTIONS) until one is taken. */
const MAX_FAILED_BOOTS = 3;

interface Spare {
  child: ChildProcess;
  env: Record<string, string>;
  spawnedAt: number;
  /** Stops collecting its output, which its new owner reads from then on. */
  release: () => void;
}

/**
 * Worker processes booted ahead of demand (OpenWhisk's "stem cells"): Node started and the worker's
 * modules loaded, but no endpoint, tenant or credential given, so one can become any endpoint's
 * worker. `take` hands one the whole environment a fresh worker would have been spawned with
 * (core/contracts/prestart-messages.ts) and it is that worker from then on: a spare serves once and
 * never returns here. A cold start then skips Node's start and the worker's module loading (about
 * 0.2–0.3 s of the first stage on this machine, before its engine can spawn).
 *
 * A spare is used only when every variable it was booted with has the same value in the assigned
 * environment: Node reads some (NODE_OPTIONS, NODE_EXTRA_CA_CERTS) only at its start, so a worker
 * whose environment differs in any of them is spawned afresh instead.
 */
export class PrestartedWorkers {
  private readonly spares: Spare[] = [];
  private booting = 0;
  private failedBoots = 0;
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly options: PrestartedWorkersOptions) {
    this.fill();
  }

  /**
   * A spare turned into the worker of `env`, or undefined when none is waiting or none fits `env`.
   * The caller owns the returned process from here on (its exit, its output, its group).
   */
  take(env: Record<string, string>): ChildProcess | undefined {
    for (let i = 0; i < this.spares.length; i++) {
      const spare = this.spares[i]!;
      if (!fits(spare.env, env)) continue;
      this.spares.splice(i, 1);
      const { child } = spare;
      child.removeAllListeners("close");
      spare.release();
      const assignment: WorkerAssignment = { type: "hearth:assign", env };
      let sent = false;
      try {
        sent = child.connected && child.exitCode === null && child.signalCode === null && child.send(assignment);
      } catch {
        sent = false;
      }
      if (!sent) {
        child.kill("SIGKILL");
        i--;
        this.later(() => this.fill(), 0);
        continue;
      }
      this.failedBoots = 0;
      this.refillAfter(child);
      return child;
    }
    return undefined;
  }

  /** Stops the spares and boots no more. */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const spare of this.spares.splice(0)) spare.child.kill("SIGTERM");
  }

  private fill(): void {
    if (this.closed || this.failedBoots >= MAX_FAILED_BOOTS) return;
    while (this.spares.length + this.booting < this.options.count) this.boot();
  }

  private boot(): void {
    const env = { ...this.options.baseEnv(), [PRESTARTED_VAR]: "1" };
    let child: ChildProcess;
    try {
      child = this.options.spawn(env);
    } catch (err) {
      this.failed(`spawn failed: ${(err as Error).message}`);
      return;
    }
    this.booting++;
    // Nothing is said before the assignment unless something is wrong: kept (a little) for the log.
    const said: string[] = [];
    const collect = (chunk: Buffer) => {
      if (said.length < 20) said.push(chunk.toString("utf8").slice(0, 500));
    };
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    const release = () => {
      child.stdout?.off("data", collect);
      child.stderr?.off("data", collect);
    };
    const spare: Spare = { child, env, spawnedAt: performance.now(), release };
    child.once("spawn", () => {
      this.booting--;
      if (this.closed) child.kill("SIGTERM");
      else this.spares.push(spare);
    });
    child.on("error", () => {
      // A failed spawn has no exit event.
      if (child.pid !== undefined) return;
      this.booting--;
      this.failed("spawn failed");
    });
    // `close`, not `exit`: its pipes are drained by then, so what it said is all here.
    child.once("close", (code, signal) => {
      const i = this.spares.indexOf(spare);
      if (i >= 0) this.spares.splice(i, 1);
      if (this.closed) return;
      this.options.log({ level: "warn", msg: "prestarted worker exited before it was used", code, signal, output: said.join("").slice(0, 4000) });
      if (performance.now() - spare.spawnedAt < FAILED_BOOT_MS) this.failed(`exited ${signal ?? code} within ${FAILED_BOOT_MS} ms of its start`);
      else this.fill();
    });
  }

  private failed(reason: string): void {
    this.failedBoots++;
    if (this.failedBoots >= MAX_FAILED_BOOTS) {
      this.options.log({ level: "error", msg: "prestarted workers stopped: their boots keep failing; workers are spawned afresh", reason });
      return;
    }
    this.later(() => this.fill(), 1000 * this.failedBoots);
  }

  /** Boots the taken spare's replacement once it is ready, exits, or `refillAfterMs` passed. */
  private refillAfter(child: ChildProcess): void {
    let done = false;
    const refill = () => {
      if (done) return;
      done = true;
      child.off("message", onMessage);
      child.off("exit", refill);
      clearTimeout(timer);
      this.timers.delete(timer);
      this.fill();
    };
    const onMessage = (raw: unknown) => {
      if (workerReady.safeParse(raw).success) this.later(refill, AFTER_READY_MS);
    };
    child.on("message", onMessage);
    child.once("exit", refill);
    const timer = this.later(refill, this.options.refillAfterMs ?? 10_000);
  }

  private later(fn: () => void, ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      fn();
    }, ms);
    timer.unref();
    this.timers.add(timer);
    return timer;
  }
}

/** Every variable the spare was booted with has the same value in the assigned environment (its own marker aside). */
function fits(booted: Record<string, string>, assigned: Record<string, string>): boolean {
  for (const [name, value] of Object.entries(booted)) {
    if (name === PRESTARTED_VAR) continue;
    if (assigned[name] !== value) return false;
  }
  return true;
}
