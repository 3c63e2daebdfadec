import { fileURLToPath } from "node:url";
import { spawnEntry, type EntryProcess } from "./entry-process.ts";

export const schedulerMain = fileURLToPath(new URL("../../scheduler/main.ts", import.meta.url));

export interface SchedulerProcessOptions {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  handlerDirs: string[];
  /** HEARTH_SCHEDULER_TICK_MS. Default 200: tests wait little for a converge. */
  tickMs?: number;
  /** More environment (HEARTH_DATA_DIR…). */
  env?: Record<string, string>;
}

/**
 * scheduler/main.ts as a process of its own (its workers are its children, over IPC), as production
 * runs it; resolves once it has started. It may still wait for the leader lock a killed predecessor
 * left behind (up to its TTL) before it starts workers.
 */
export function spawnScheduler(options: SchedulerProcessOptions): Promise<EntryProcess> {
  return spawnEntry(schedulerMain, {
    env: {
      DATABASE_URL: options.databaseUrl,
      REDIS_URL: options.redisUrl,
      HEARTH_REDIS_PREFIX: options.redisPrefix,
      HEARTH_HANDLER_DIRS: options.handlerDirs.join(":"),
      HEARTH_SCHEDULER_TICK_MS: String(options.tickMs ?? 200),
      ...options.env,
    },
    readyLine: /"msg":"scheduler started"/,
  });
}
