import { AsyncLocalStorage } from "node:async_hooks";
import { formatWithOptions } from "node:util";
import type { Log, LogLine } from "../../core/log/process-log.ts";

/** The job a piece of code runs for, carried through its awaits: what its log lines are tagged with. */
export interface JobLogFields {
  jobId: string;
  traceId: string;
}

export const jobLogContext = new AsyncLocalStorage<JobLogFields>();

/** A `console` line longer than this is cut: one runaway print must not make a multi-megabyte log line. */
const MAX_MESSAGE_CHARS = 64 * 1024;

const LEVELS = { debug: "debug", log: "info", info: "info", warn: "warn", error: "error", trace: "debug" } as const;

/**
 * Sends this process's `console` through `log`: a handler runs in the worker process, and what it
 * prints while it runs a job is logged with that job's `jobId` and `traceId` (so the job's logs
 * route shows it), as `source: "console"`. Writes straight to process.stdout stay plain text.
 */
export function routeConsole(log: Log): void {
  for (const [method, level] of Object.entries(LEVELS) as [keyof typeof LEVELS, LogLine["level"]][]) {
    console[method] = (...args: unknown[]) => {
      const text = formatWithOptions({ colors: false }, ...args);
      const msg = text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS)}…` : text;
      log({ level, msg, source: "console", ...jobLogContext.getStore() });
    };
  }
}
