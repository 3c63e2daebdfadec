import { spawn } from "node:child_process";
import type { CleanupStack } from "./cleanup-stack.ts";

export interface ChildOptions<T> {
  /** Shown in logs and errors. */
  name: string;
  /** Absolute path of the TypeScript entry, run as `node --import tsx <entry>`. */
  entry: string;
  env: NodeJS.ProcessEnv;
  /** Node flags placed before `--import tsx` (e.g. `--cpu-prof`). */
  nodeArgs?: string[];
  /** Called with each output line until it returns a value; that value is the child's `ready` result. */
  ready: (line: string) => T | undefined;
  /** How long to wait for the ready line, ms. Default 60000. */
  readyTimeoutMs?: number;
  /** How long SIGTERM gets before SIGKILL, ms. Default 45000 (a scheduler drains its workers first). */
  stopTimeoutMs?: number;
  /** Echo every output line, prefixed with the name. Default false. */
  echo?: boolean;
  /** Every output line, for the child's whole life (e.g. the scheduler's forwarded worker lines). */
  onLine?: (line: string) => void;
}

export interface RunningChild<T> {
  name: string;
  pid: number;
  ready: T;
  /** `performance.now()` of this process when the child was spawned: offsets into the child's CPU profile. */
  spawnedAt: number;
  /** True until the process exits. */
  alive(): boolean;
  /** The last output lines, for error messages. */
  tail(): string;
  /** SIGTERM, wait for exit (SIGKILL after the timeout). Idempotent; resolves to the exit code or signal. */
  stop(): Promise<string>;
}

const TAIL_LINES = 60;

/**
 * Starts one child process, resolves when it prints its ready line, and registers its stop with
 * `cleanup` so an error anywhere in the bench still ends it. Rejects (with the child's last output)
 * if it exits or stays silent first.
 */
export function startChild<T>(options: ChildOptions<T>, cleanup: CleanupStack): Promise<RunningChild<T>> {
  const spawnedAt = performance.now();
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), "--import", "tsx", options.entry], {
    env: options.env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let exit: string | undefined;
  const exited = new Promise<string>((resolve) => {
    child.once("exit", (code, signal) => {
      exit = signal ?? String(code);
      resolve(exit);
    });
  });

  let stopping: Promise<string> | undefined;
  const stop = (): Promise<string> => {
    stopping ??= (async () => {
      if (exit !== undefined) return exit;
      child.kill("SIGTERM");
      const timeoutMs = options.stopTimeoutMs ?? 45_000;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), timeoutMs)));
      const first = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (first !== "late") return first;
      console.error(`[bench] ${options.name} ignored SIGTERM for ${timeoutMs} ms; killing it`);
      child.kill("SIGKILL");
      return exited;
    })();
    return stopping;
  };
  cleanup.push(`stop ${options.name}`, stop);

  return new Promise((resolve, reject) => {
    let readyValue: T | undefined;
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`${options.name} printed no ready line within ${options.readyTimeoutMs ?? 60_000} ms\n${tail()}`));
    }, options.readyTimeoutMs ?? 60_000);
    const tail = () => lines.map((l) => `  ${options.name}| ${l}`).join("\n");

    const onLine = (line: string) => {
      lines.push(line);
      if (lines.length > TAIL_LINES) lines.shift();
      options.onLine?.(line);
      if (options.echo) console.log(`  ${options.name}| ${line}`);
      if (readyValue !== undefined) return;
      readyValue = options.ready(line);
      if (readyValue === undefined) return;
      clearTimeout(timer);
      resolve({ name: options.name, pid: child.pid!, ready: readyValue, spawnedAt, alive: () => exit === undefined, tail, stop });
    };
    for (const stream of [child.stdout, child.stderr]) {
      let partial = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        const parts = (partial + chunk).split("\n");
        partial = parts.pop() ?? "";
        for (const p of parts) onLine(p);
      });
    }
    void exited.then((how) => {
      if (readyValue !== undefined) return;
      clearTimeout(timer);
      reject(new Error(`${options.name} exited (${how}) before it was ready\n${tail()}`));
    });
  });
}

/** A ready matcher for JSON log lines: returns `pick(obj)` for the first line that parses and matches. */
export function jsonLine<T>(pick: (obj: Record<string, unknown>) => T | undefined): (line: string) => T | undefined {
  return (line) => {
    if (!line.startsWith("{")) return undefined;
    try {
      return pick(JSON.parse(line) as Record<string, unknown>);
    } catch {
      return undefined;
    }
  };
}
