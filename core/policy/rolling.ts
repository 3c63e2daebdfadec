import { createHash } from "node:crypto";
import type { WorkerState } from "../contracts/worker-state.ts";

/**
 * Rolling an endpoint whose engine spec changed: every worker carries the hash of the spec it was
 * started with (its session's `specHash`); one of another hash is outdated. Outdated workers are
 * left out of the scaling step (so new ones start for the demand, first), and drained (they finish
 * their jobs and take no new ones) once a worker of the current spec is ready, or at once when
 * nothing needs serving. A paused outdated worker (the snapshot pool) is evicted at once: it can
 * never serve the new spec.
 */

/** A stable hash of an engine spec as stored (keys sorted): equal specs, equal hashes. */
export function specHash(engine: unknown): string {
  return createHash("sha256").update(stableJson(engine)).digest("hex").slice(0, 16);
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

export interface RollInput {
  /** The endpoint's workers that can be stopped, with the spec hash each was started with (undefined: unknown, left alone). */
  workers: readonly { id: string; state: WorkerState; specHash: string | undefined }[];
  /** The endpoint's current spec hash. */
  current: string;
  /** Workers the scaling step wants, counted without the outdated ones. */
  desired: number;
}

export interface RollDecision {
  /** Outdated workers: not counted as capacity by the scaling step. */
  outdated: string[];
  /** Outdated workers to drain and stop now. */
  stop: string[];
}

const READY: ReadonlySet<WorkerState> = new Set(["idle", "running"]);
const DONE: ReadonlySet<WorkerState> = new Set(["draining", "exited", "lost"]);

export function planRoll(s: RollInput): RollDecision {
  const outdated = s.workers.filter((w) => w.specHash !== undefined && w.specHash !== s.current && !DONE.has(w.state));
  if (outdated.length === 0) return { outdated: [], stop: [] };
  const newReady = s.workers.some((w) => w.specHash === s.current && READY.has(w.state));
  const stop = outdated.filter((w) => newReady || s.desired === 0 || !READY.has(w.state)).map((w) => w.id);
  return { outdated: outdated.map((w) => w.id), stop };
}
