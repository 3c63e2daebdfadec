import { readdirSync, readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import { workerHeartbeat } from "../../core/contracts/worker-state.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";

export interface EngineProcess {
  pid: number;
  /** The process that started it: the worker supervising it. */
  parentPid: number;
  /** Loopback URL the engine serves on, from its `--port` flag. */
  url: string;
  /** Its flags, from `--model` on. */
  flags: string[];
}

/**
 * Engine processes whose `--model` contains `marker` (a test's unique model path), found in /proc:
 * a worker's engine is a grandchild of the test (or the bench), on a port the worker picked, and
 * whoever checks the engine's own counters, requests it directly or kills it mid-job has to find
 * it from outside.
 */
export function findEngineProcesses(marker: string): EngineProcess[] {
  const found: EngineProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").filter(Boolean);
      const modelAt = argv.indexOf("--model");
      const portAt = argv.indexOf("--port");
      if (modelAt < 0 || portAt < 0 || !argv[modelAt + 1]?.includes(marker)) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const parentPid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      found.push({ pid: Number(entry), parentPid, url: `http://127.0.0.1:${argv[portAt + 1]}`, flags: argv.slice(modelAt) });
    } catch {
      // exited while we read
    }
  }
  return found;
}

/** The pid of a local worker process, found by the HEARTH_WORKER_ID in its environment. */
export function pidOfWorker(workerId: string): number {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, "latin1").split("\0").includes(`HEARTH_WORKER_ID=${workerId}`)) return Number(entry);
    } catch {
      // a process that ended, or not ours to read
    }
  }
  throw new Error(`no process for worker ${workerId} (a prestarted worker's environ shows its boot's environment: find it by its heartbeat's pid, pidFromHeartbeat)`);
}

/** The worker's pid as its heartbeat says (the only way to a prestarted worker: see pidOfWorker). */
export async function pidFromHeartbeat(redis: Redis, keys: RedisKeys, endpointId: string, workerId: string): Promise<number> {
  const raw = await redis.hget(keys.workers(endpointId), workerId);
  const pid = raw === null ? undefined : workerHeartbeat.parse(JSON.parse(raw)).pid;
  if (pid === undefined) throw new Error(`no heartbeat with a pid for worker ${workerId}`);
  return pid;
}
