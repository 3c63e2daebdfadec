import type { Log, LogLevel } from "./process-log.ts";

const RANK: Record<LogLevel, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

/**
 * The log where pino has no stdout to write to (a Cloudflare Worker: its console is the log the
 * platform collects): one JSON line per entry with the field names `processLog` writes.
 */
export function consoleLog(component: string, level: LogLevel = "info"): Log {
  const least = RANK[level];
  return ({ level: lineLevel = "info", msg, ...fields }) => {
    if (RANK[lineLevel] < least) return;
    console.log(JSON.stringify({ level: lineLevel, time: new Date().toISOString(), component, ...fields, msg }));
  };
}
