import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { freePort } from "./services.ts";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));
export const apiMain = fileURLToPath(new URL("../../apps/api/main.ts", import.meta.url));
export const controlMain = fileURLToPath(new URL("../../apps/control/main.ts", import.meta.url));

/** A process entry (`main.ts`) run the way production runs it: its own node process, env only. */
export interface EntryProcess {
  child: ChildProcess;
  pid: number;
  /** Resolves with the exit code (null when a signal ended it) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Everything it wrote to stdout and stderr so far (the last 20 000 characters). */
  output(): string;
  /** Sends a signal and waits for the exit; a no-op once exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Resident set size of the process, in KiB (`VmRSS` of /proc/<pid>/status). */
  rssKb(): number;
}

export interface SpawnEntryOptions {
  env: Record<string, string>;
  /** Resolve once a line of stdout matches; otherwise resolve as soon as the process has spawned. */
  readyLine?: RegExp;
  /** How long to wait for `readyLine`, in ms. Default 30 000. */
  readyTimeoutMs?: number;
}

/** Spawns `node --import tsx <entry>` from the repository root with `env` on top of this process's environment. */
export async function spawnEntry(entry: string, options: SpawnEntryOptions): Promise<EntryProcess> {
  const child = spawn(process.execPath, ["--import", "tsx", entry], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...options.env },
  });
  let out = "";
  const keep = (chunk: Buffer) => {
    out = (out + chunk.toString("utf8")).slice(-20_000);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });

  const handle: EntryProcess = {
    child,
    pid: child.pid!,
    exited,
    output: () => out,
    async kill(signal = "SIGKILL") {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await exited;
    },
    rssKb() {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, "utf8"));
      if (!m) throw new Error(`no VmRSS for pid ${child.pid}`);
      return Number(m[1]);
    },
  };

  const { readyLine } = options;
  if (readyLine) {
    const timeoutMs = options.readyTimeoutMs ?? 30_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => fail(new Error(`${entry}: not ready after ${timeoutMs}ms`)), timeoutMs);
      const check = () => {
        if (readyLine.test(out)) done();
      };
      const onExit = () => fail(new Error(`${entry}: exited before it was ready`));
      const cleanup = () => {
        clearTimeout(timer);
        child.stdout?.off("data", check);
        child.off("exit", onExit);
      };
      const done = () => {
        cleanup();
        resolve();
      };
      const fail = (err: Error) => {
        cleanup();
        void handle.kill().then(() => reject(new Error(`${err.message}\n${out}`)));
      };
      child.stdout?.on("data", check);
      child.once("exit", onExit);
      check();
    });
  }
  return handle;
}

export interface ApiProcessOptions {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  handlerDirs: string[];
  adminToken: string;
}

/** apps/api/main.ts as a process on a free loopback port; resolves once it listens. */
export async function spawnApi(options: ApiProcessOptions): Promise<EntryProcess & { url: string }> {
  const port = await freePort();
  const proc = await spawnEntry(apiMain, {
    env: {
      DATABASE_URL: options.databaseUrl,
      REDIS_URL: options.redisUrl,
      HEARTH_REDIS_PREFIX: options.redisPrefix,
      HEARTH_HANDLER_DIRS: options.handlerDirs.join(":"),
      HEARTH_ADMIN_TOKEN: options.adminToken,
      PORT: String(port),
      HOST: "127.0.0.1",
    },
    readyLine: /"msg":"listening"/,
  });
  return Object.assign(proc, { url: `http://127.0.0.1:${port}` });
}

/** apps/control/main.ts as a process; resolves once it has started its consumers. */
export function spawnControl(options: { databaseUrl: string; redisUrl: string; redisPrefix: string; env?: Record<string, string> }): Promise<EntryProcess> {
  return spawnEntry(controlMain, {
    env: { DATABASE_URL: options.databaseUrl, REDIS_URL: options.redisUrl, HEARTH_REDIS_PREFIX: options.redisPrefix, ...options.env },
    readyLine: /"msg":"control plane started"/,
  });
}
