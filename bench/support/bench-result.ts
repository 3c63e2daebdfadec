import type { Redis } from "ioredis";
import type { BenchConfig } from "./bench-config.ts";
import type { CleanupStack } from "./cleanup-stack.ts";
import type { CpuShare } from "./cpu-usage.ts";
import type { Isolation } from "./isolation.ts";

/** What every benchmark gets from `run.ts`. */
export interface BenchContext {
  config: BenchConfig;
  isolation: Isolation;
  /** The bench process's own connection (cleanup, the BullMQ floor's producer). */
  redis: Redis;
  cleanup: CleanupStack;
  log(msg: string): void;
}

/** The one number a benchmark is judged on: Hearth's value over its floor's, against a target. */
export interface Comparison {
  metric: string;
  unit: string;
  hearth: number;
  floor: number;
  /** hearth / floor. */
  ratio: number;
  target: { op: "<=" | ">="; value: number };
  pass: boolean;
}

export interface BenchResult {
  name: string;
  comparison: Comparison;
  /** Why the numbers cannot be trusted (errors, non-2xx, a child died). Non-empty means invalid, whatever `pass` says. */
  problems: string[];
  settings: Record<string, unknown>;
  hearth: Record<string, unknown>;
  floor: Record<string, unknown>;
  /** CPU time per process group during each side's measured window (Linux only). */
  cpu: { hearth?: Record<string, CpuShare>; floor?: Record<string, CpuShare> };
}

export function compare(metric: string, unit: string, hearth: number, floor: number, target: Comparison["target"]): Comparison {
  const ratio = Math.round((hearth / floor) * 1000) / 1000;
  const pass = target.op === "<=" ? ratio <= target.value : ratio >= target.value;
  return { metric, unit, hearth, floor, ratio, target, pass: Number.isFinite(ratio) && pass };
}
