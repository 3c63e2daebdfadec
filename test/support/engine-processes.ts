import { readdirSync, readFileSync } from "node:fs";

export interface EngineProcess {
  pid: number;
  /** Loopback URL the engine serves on, from its `--port` flag. */
  url: string;
}

/**
 * Engine processes whose command line contains `marker` (a test's unique model path), found in
 * /proc: a worker's engine is a grandchild of the test, on a port the worker picked, and a test
 * that checks the engine's own counters or kills it mid-job has to find it from outside.
 */
export function findEngineProcesses(marker: string): EngineProcess[] {
  const found: EngineProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // exited meanwhile
    }
    if (!argv.some((a) => a.includes(marker))) continue;
    const portAt = argv.indexOf("--port");
    if (portAt < 0) continue;
    found.push({ pid: Number(entry), url: `http://127.0.0.1:${argv[portAt + 1]}` });
  }
  return found;
}
