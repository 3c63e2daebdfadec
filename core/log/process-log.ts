import { pino, type DestinationStream, type Logger } from "pino";
import { z } from "zod";

export const logLevel = z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]);
export type LogLevel = z.infer<typeof logLevel>;

/**
 * One structured log entry; `msg` names the event, the rest are its facts. The fields that tie lines
 * together have one spelling everywhere: `requestId`, `jobId`, `endpointId`, `workerId`, `traceId`.
 */
export type LogLine = { level?: Exclude<LogLevel, "silent">; msg: string } & Record<string, unknown>;

/**
 * What the code logs through: a function, so a test can collect lines in an array and a class
 * needs no logger type. In production it is `processLog`'s, which writes through pino.
 */
export type Log = (entry: LogLine) => void;

export interface ProcessLogOptions {
  /** Least level written; default `info` (HEARTH_LOG_LEVEL, read with the process's config). */
  level?: LogLevel;
  /** Fields on every line of the process (its workerId, endpointId…). */
  fields?: Record<string, unknown>;
  /**
   * Where lines go; default process.stdout, which Node writes synchronously to files and pipes on
   * Linux: a line logged just before a SIGKILL is not lost in a buffer.
   */
  destination?: DestinationStream;
}

/**
 * The log of a process: pino, one JSON line per entry on stdout, with the same field names in every
 * process (`level` as a name, `time` as ISO 8601, `component` naming the process), so a collector
 * parses every Hearth process with one rule.
 */
export function processLog(component: string, options: ProcessLogOptions = {}): Log {
  return logThrough(pinoFor(component, options));
}

/** The pino logger behind `processLog`, for the places that want pino itself (children with bindings). */
export function pinoFor(component: string, options: ProcessLogOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? "info",
      base: { component, pid: process.pid, ...options.fields },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? process.stdout,
  );
}

/** Adapts a pino logger to `Log`. */
export function logThrough(logger: Logger): Log {
  return ({ level = "info", msg, ...fields }) => {
    if (logger.isLevelEnabled(level)) logger[level](fields, msg);
  };
}

/** `log` with `fields` on every line (a job's, a request's); the entry's own fields win. */
export function withFields(log: Log, fields: Record<string, unknown>): Log {
  return (entry) => log({ ...fields, ...entry });
}

/** Error values lose their message under JSON.stringify; keep what an operator needs. */
export function errorFields(err: unknown): { error: string; code?: unknown } {
  if (err instanceof Error) return { error: err.message, ...("code" in err ? { code: err.code } : {}) };
  return { error: String(err) };
}
