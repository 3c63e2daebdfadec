import { spawn, type ChildProcess } from "node:child_process";
import { stopChild } from "../stop-child.ts";
import { createInterface } from "node:readline";
import type { EngineCommandLine } from "../../../core/engine/engine-profiles.ts";
import { NO_CRASHES, recordCrash, startDelayMs, type CrashRecord } from "../../../core/policy/restart-backoff.ts";

export type SupervisorState = "starting" | "ready" | "unhealthy" | "stopped";

export interface EngineSupervisorOptions {
  /** What to run: the profile's command line, serving the OpenAI HTTP API on its `port`. */
  engine: EngineCommandLine;
  /** How long a start may take to become healthy (ms); the process is killed past it. Default 600000. */
  startupTimeoutMs?: number;
  /** Backoff between restarts after crashes. Defaults: 1000 ms doubling to 30000 ms. */
  restartBaseMs?: number;
  restartMaxMs?: number;
  /** Each line the engine prints; default: forwarded to this process's stderr, prefixed. */
  onLog?: (line: string, stream: "stdout" | "stderr") => void;
  onState?: (state: SupervisorState, detail?: string) => void;
  /** How long a stopping engine gets between SIGTERM and SIGKILL (ms). Default 10000. */
  stopGraceMs?: number;
  /**
   * The engine's whole environment (see core/engine/engine-environment.ts); nothing of this
   * process's is added. Default: PATH and the command line's own `env`.
   */
  env?: Record<string, string>;
  /** Run the engine as this user (uid and gid; the worker must be root). Default: this process's user. */
  user?: { uid: number; gid: number };
}

/**
 * Runs one engine process and keeps it serving: waits for its health route on start, and when it
 * dies, reports `unhealthy`, aborts the requests in flight (through `lost`) and starts it again
 * after a backoff, until `stop()`. Where the process runs is the engine's business; requests go to
 * `baseUrl`.
 */
export class EngineSupervisor {
  private child: ChildProcess | undefined;
  private lostController = new AbortController();
  private crashes: CrashRecord = NO_CRASHES;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private state: SupervisorState = "stopped";

  constructor(private readonly options: EngineSupervisorOptions) {}

  get baseUrl(): string {
    return `http://127.0.0.1:${this.options.engine.port}`;
  }
  get current(): SupervisorState {
    return this.state;
  }
  /** Aborts when the engine process in service now goes away: requests to it cannot complete. */
  get lost(): AbortSignal {
    return this.lostController.signal;
  }
  /** The engine process's pid while one runs. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the engine and resolves once it is healthy; rejects (and kills it) if it exits or times out first. */
  async start(): Promise<void> {
    this.stopping = false;
    await this.launch();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    await stopChild(this.child, this.options.stopGraceMs ?? 10_000);
    this.setState("stopped");
  }

  private setState(state: SupervisorState, detail?: string): void {
    this.state = state;
    this.options.onState?.(state, detail);
  }

  private async launch(): Promise<void> {
    const { engine } = this.options;
    this.setState("starting");
    this.lostController = new AbortController();
    const env = this.options.env ?? { ...(process.env.PATH !== undefined && { PATH: process.env.PATH }), ...engine.env };
    const user = this.options.user;
    // Not detached: the engine stays in the worker's process group, which the provider kills
    // whole once the worker is gone (see scheduler/providers/local-provider.ts).
    const child = spawn(engine.command, engine.args, { env, stdio: ["ignore", "pipe", "pipe"], ...(user && { uid: user.uid, gid: user.gid }) });
    this.child = child;
    // Last resort for a worker that exits without stopping us (process.exit on a failed start):
    // its engine must not outlive it. Runs synchronously, as exit handlers must.
    const killOnExit = () => child.kill("SIGKILL");
    process.once("exit", killOnExit);
    child.once("exit", () => process.off("exit", killOnExit));
    child.once("error", () => process.off("exit", killOnExit));
    const log = this.options.onLog ?? ((line, stream) => process.stderr.write(`[engine ${stream}] ${line}\n`));
    createInterface({ input: child.stdout! }).on("line", (l) => log(l, "stdout"));
    createInterface({ input: child.stderr! }).on("line", (l) => log(l, "stderr"));

    const exited = new Promise<string>((resolve) => {
      child.once("error", (err) => resolve(`failed to start: ${err.message}`));
      child.once("exit", (code, signal) => resolve(`exited (${signal ?? `code ${code}`})`));
    });
    void exited.then((how) => this.onExit(child, how));

    const launchedAt = Date.now();
    const deadline = launchedAt + (this.options.startupTimeoutMs ?? 600_000);
    const healthy = (async () => {
      while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
        const ok = await fetch(`${this.baseUrl}${engine.healthPath}`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
        if (ok) return true;
        // Often at first, when a small model may be up within a second and each poll's wait adds to
        // the cold start (a refused connect costs next to nothing); every 100 ms after 5 s.
        await new Promise((r) => setTimeout(r, Date.now() - launchedAt < 5000 ? 20 : 100));
      }
      return false;
    })();
    const outcome = await Promise.race([healthy.then((ok) => (ok ? "healthy" : "timeout")), exited]);
    if (outcome === "healthy") {
      this.crashes = NO_CRASHES;
      this.setState("ready");
      return;
    }
    if (outcome === "timeout") child.kill("SIGKILL");
    throw new Error(`engine ${engine.command} ${outcome === "timeout" ? `not healthy within ${this.options.startupTimeoutMs ?? 600_000} ms` : outcome}`);
  }

  private onExit(child: ChildProcess, how: string): void {
    if (child !== this.child) return;
    this.lostController.abort(new Error(`engine process ${how}`));
    if (this.stopping || this.state === "starting") return; // stop() or a pending launch() reports it
    this.scheduleRestart(how);
  }

  private scheduleRestart(reason: string): void {
    this.crashes = recordCrash(this.crashes, Date.now());
    this.setState("unhealthy", reason);
    const delay = startDelayMs(this.crashes, Date.now(), { baseMs: this.options.restartBaseMs ?? 1000, maxMs: this.options.restartMaxMs ?? 30_000 });
    this.restartTimer = setTimeout(() => {
      if (this.stopping) return;
      // A restart that fails counts as one more crash, and waits longer.
      this.launch().catch((err: unknown) => {
        if (!this.stopping) this.scheduleRestart(err instanceof Error ? err.message : String(err));
      });
    }, delay);
  }
}
