import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./services.ts";

export interface OwnRedisOptions {
  /** Append-only file on or off. Default true, so a restart reloads what was written. */
  aof?: boolean;
  /** AOF fsync policy. Default "always": every acknowledged write is on disk before the reply. */
  appendfsync?: "always" | "everysec";
  /** How long `start()` waits for PING to answer and the AOF to finish loading, in milliseconds. Default 20 000. */
  startTimeoutMs?: number;
}

/** A redis-server this test owns: stopping or killing it disturbs no other test and never the shared 6379. */
export interface OwnRedis {
  /** `redis://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** Working dir holding the AOF (`appendonlydir/`); kept across stop/kill/start, removed by `destroy()`. */
  dir: string;
  /** Graceful shutdown (SIGTERM: flushes the AOF), resolves once the process has exited. A no-op when not running. */
  stop(): Promise<void>;
  /** SIGKILL, resolves once the process has exited: a crash, nothing flushed beyond what was already written. */
  kill(): Promise<void>;
  /** Starts again on the same port and dir; resolves when PING answers and the AOF has finished loading. A no-op when running. */
  start(): Promise<void>;
  /** Kills the server if it is running and removes its dir; safe to call more than once. */
  destroy(): Promise<void>;
}

/** Starts a redis-server child process (not daemonized, so we own its pid) on a free loopback port. */
export async function startOwnRedis(options: OwnRedisOptions = {}): Promise<OwnRedis> {
  const aof = options.aof ?? true;
  const appendfsync = options.appendfsync ?? "always";
  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const dir = await mkdtemp(join(tmpdir(), "hearth-redis-"));
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const args = [
    "--port", String(port), "--bind", "127.0.0.1", "--dir", dir,
    "--appendonly", aof ? "yes" : "no", "--appendfsync", appendfsync,
    // No RDB snapshots: with AOF on, durability under test is the AOF's alone; with it off, a restart starts empty.
    "--save", "",
  ];

  let child: ChildProcess | undefined;
  let log = "";
  let destroyed = false;

  const waitExit = (proc: ChildProcess): Promise<void> =>
    proc.exitCode !== null || proc.signalCode !== null ? Promise.resolve() : new Promise((r) => proc.once("exit", () => r()));
  const signal = async (sig: NodeJS.Signals): Promise<void> => {
    const proc = child;
    if (!proc) return;
    const exited = waitExit(proc);
    proc.kill(sig);
    await exited;
    child = undefined;
  };
  // A crashed test run would otherwise leave the server behind; kill() here is synchronous, as an exit handler must be.
  const onExit = (): void => {
    child?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  };

  const handle: OwnRedis = {
    url,
    port,
    dir,
    stop: () => signal("SIGTERM"),
    kill: () => signal("SIGKILL"),
    async start() {
      if (destroyed) throw new Error("own redis: start() after destroy()");
      if (child) return;
      log = "";
      const proc = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] });
      child = proc;
      const keepLog = (chunk: Buffer): void => {
        log = (log + chunk.toString("utf8")).slice(-4000);
      };
      proc.stdout?.on("data", keepLog);
      proc.stderr?.on("data", keepLog);
      let exitedEarly = false;
      let spawnError: Error | undefined;
      proc.once("error", (err) => {
        spawnError = err;
      });
      proc.once("exit", () => {
        exitedEarly = true;
        if (child === proc) child = undefined;
      });
      const deadline = Date.now() + startTimeoutMs;
      for (;;) {
        if (spawnError) throw new Error(`own redis: could not run redis-server: ${spawnError.message}`);
        if (exitedEarly) throw new Error(`own redis: redis-server exited during start (port ${port} taken?)\n${log}`);
        if (await isReady(url)) return;
        if (Date.now() > deadline) {
          await signal("SIGKILL");
          throw new Error(`own redis: not ready after ${startTimeoutMs}ms\n${log}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        await signal("SIGKILL");
      } finally {
        process.off("exit", onExit);
        await rm(dir, { recursive: true, force: true });
      }
    },
  };

  process.on("exit", onExit);
  try {
    await handle.start();
  } catch (err) {
    await handle.destroy().catch(() => {});
    throw err;
  }
  return handle;
}

/** True once the server answers PING and reports it is not loading (it refuses most commands while replaying the AOF). */
async function isReady(url: string): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0, enableReadyCheck: false });
  probe.on("error", () => {}); // refused connections are the expected answer until the server is up
  try {
    await probe.connect();
    if ((await probe.ping()) !== "PONG") return false;
    return /^loading:0\r?$/m.test(await probe.info("persistence"));
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}
