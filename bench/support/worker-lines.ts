/** What the bench saw of one worker in the lines its scheduler forwards. */
export interface SeenWorker {
  endpointId: string | undefined;
  /** Phase → ms since the worker's process started, the first line of each. */
  phases: Record<string, number>;
  /** Wall clock (ms) of its process start: a line's time less its ms since start. */
  startedAt?: number;
  exited: boolean;
  pauses: number;
  resumes: number;
  /** The last resume: when the worker began it (wall clock, ms) and what it took the worker (engine woken, a fresh queue worker), ms. */
  lastResume?: { startedAt: number; resumeMs: number };
}

/** A JSON object line, or undefined. */
export function parseLine(line: string): Record<string, unknown> | undefined {
  if (!line.startsWith("{")) return undefined;
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * Hearth's workers as their own lines tell it (the scheduler forwards them): each one's phases in
 * ms since its process start (`boot`, `engine-ready`, `ready`, `first-job`, …), its process start
 * on the wall clock, pauses, resumes and its exit. Hand `onLine` to `startHearthFor`.
 */
export class WorkerLines {
  private readonly workers = new Map<string, SeenWorker>();

  readonly onLine = (line: string): void => {
    const o = parseLine(line);
    if (o?.component !== "worker" || typeof o.workerId !== "string") return;
    const seen = this.workers.get(o.workerId) ?? { endpointId: undefined, phases: {}, exited: false, pauses: 0, resumes: 0 };
    this.workers.set(o.workerId, seen);
    if (typeof o.endpointId === "string") seen.endpointId ??= o.endpointId;
    if (typeof o.phase !== "string" || typeof o.ms !== "number") return;
    seen.phases[o.phase] ??= o.ms;
    const at = typeof o.time === "string" ? Date.parse(o.time) : undefined;
    // pino's `time` is the wall clock of the line: minus the worker's ms since start, its process start.
    if (seen.startedAt === undefined && at !== undefined) seen.startedAt = at - o.ms;
    if (o.phase === "exit") seen.exited = true;
    if (o.phase === "paused") seen.pauses++;
    if (o.phase === "resumed") {
      seen.resumes++;
      if (at !== undefined && typeof o.resumeMs === "number") seen.lastResume = { startedAt: at - o.resumeMs, resumeMs: o.resumeMs };
    }
  };

  /** The ids seen so far: pass them to `since` after the next request. */
  ids(): Set<string> {
    return new Set(this.workers.keys());
  }

  get(workerId: string): SeenWorker | undefined {
    return this.workers.get(workerId);
  }

  /** Workers first seen after `before` was taken (of one endpoint when given). */
  since(before: Set<string>, endpointId?: string): [string, SeenWorker][] {
    return [...this.workers.entries()].filter(([id, w]) => !before.has(id) && (endpointId === undefined || w.endpointId === endpointId));
  }
}
