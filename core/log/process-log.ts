/** One structured log entry; `msg` names the event, the rest are its facts. */
export type LogLine = { level?: "info" | "warn" | "error"; msg: string } & Record<string, unknown>;
export type Log = (entry: LogLine) => void;

/**
 * The production log of a process: one JSON line per entry on stdout, so a collector can parse it
 * without rules. `component` names the process (scheduler, control…).
 */
export function jsonLineLog(component: string, stream: NodeJS.WritableStream = process.stdout): Log {
  return (entry) => {
    stream.write(`${JSON.stringify({ time: new Date().toISOString(), level: "info", component, ...entry })}\n`);
  };
}

/** Error values lose their message under JSON.stringify; keep what an operator needs. */
export function errorFields(err: unknown): { error: string; code?: unknown } {
  if (err instanceof Error) return { error: err.message, ...("code" in err ? { code: err.code } : {}) };
  return { error: String(err) };
}
