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
  /** Reasons to doubt the numbers that do not void them (e.g. other processes busy during a window). */
  warnings: string[];
  settings: Record<string, unknown>;
  hearth: Record<string, unknown>;
  floor: Record<string, unknown>;
  /** CPU time per process group during each side's measured window (Linux only). */
  cpu: { hearth?: Record<string, CpuShare>; floor?: Record<string, CpuShare> };
}

/** Busy time of the rest of the machine above this (% of one core) in a measured window makes it noisy. */
export const NOISY_REST_PERCENT = 25;

/** Warnings for windows in which other processes took a noticeable share of the machine. */
export function noiseWarnings(cpu: BenchResult["cpu"], restRole: string): string[] {
  const out: string[] = [];
  for (const side of ["hearth", "floor"] as const) {
    const rest = cpu[side]?.[restRole];
    if (rest && rest.percentOfOneCore > NOISY_REST_PERCENT) {
      out.push(`${side}: the rest of the machine used ${rest.percentOfOneCore}% of a core during the measured window (other processes or kernel work); the numbers are noisy`);
    }
  }
  return out;
}

export function compare(metric: string, unit: string, hearth: number, floor: number, target: Comparison["target"]): Comparison {
  const ratio = Math.round((hearth / floor) * 1000) / 1000;
  const pass = target.op === "<=" ? ratio <= target.value : ratio >= target.value;
  return { metric, unit, hearth, floor, ratio, target, pass: Number.isFinite(ratio) && pass };
}
