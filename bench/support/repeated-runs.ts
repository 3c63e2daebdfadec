import type { BenchName } from "./bench-config.ts";
import type { BenchResult } from "./bench-result.ts";

/**
 * The benchmarks issue 7 judges on the median of 5 runs (these machines vary run to run): each
 * run compares Hearth with its floor in the same run, and the table shows the median run.
 */
export const MEDIAN_OF_FIVE: ReadonlySet<BenchName> = new Set(["runsync-latency", "run-throughput", "llm-stream"]);

/** How many times a benchmark runs: BENCH_RUNS when set, else 5 for MEDIAN_OF_FIVE and 1 for the rest. */
export function runsOf(name: BenchName, configured: number | undefined): number {
  return configured ?? (MEDIAN_OF_FIVE.has(name) ? 5 : 1);
}

/** The spread of one table row over its runs, kept in the results file beside the median run's details. */
export interface RunSpread {
  runs: number;
  ratios: number[];
  medianRatio: number;
  minRatio: number;
  maxRatio: number;
  /** Runs that met the target. */
  passed: number;
  /** Each side row's ratio to the floor (`vsFloor`) in every run that has it, keyed `<side>: <row>`. */
  rowRatios?: Record<string, number[]>;
}

/** The `vsFloor` of each row beside the comparison (`hearth.rows`, `floor.rows`) of one run, keyed `<side>: <row>`. */
function rowRatiosOf(r: BenchResult): [string, number][] {
  const out: [string, number][] = [];
  for (const side of ["hearth", "floor"] as const) {
    const rows = r[side].rows;
    if (rows === null || typeof rows !== "object") continue;
    for (const [name, v] of Object.entries(rows)) {
      const ratio = (v as { vsFloor?: unknown } | null)?.vsFloor;
      if (typeof ratio === "number") out.push([`${side}: ${name}`, ratio]);
    }
  }
  return out;
}

/**
 * Folds N runs of one benchmark (each a list of rows, one per target) into one list: per row, the
 * run whose ratio is the median (the lower middle of an even count), carrying the spread of all
 * runs. An invalid run makes the row invalid: its problems are kept, whichever run is shown.
 */
export function medianRuns(runs: BenchResult[][]): (BenchResult & { spread?: RunSpread })[] {
  if (runs.length === 0) return [];
  if (runs.length === 1) return runs[0]!;
  const rows = runs[0]!.length;
  const out: (BenchResult & { spread: RunSpread })[] = [];
  for (let i = 0; i < rows; i++) {
    const row = runs.map((r) => r[i]).filter((r): r is BenchResult => r !== undefined);
    const sorted = [...row].sort((a, b) => a.comparison.ratio - b.comparison.ratio);
    const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
    const ratios = row.map((r) => r.comparison.ratio);
    const problems = row.flatMap((r, k) => r.problems.map((p) => (r === median ? p : `run ${k + 1}: ${p}`)));
    const rowRatios: Record<string, number[]> = {};
    for (const r of row) for (const [key, ratio] of rowRatiosOf(r)) (rowRatios[key] ??= []).push(ratio);
    out.push({
      ...median,
      problems,
      spread: {
        runs: row.length,
        ratios,
        medianRatio: median.comparison.ratio,
        minRatio: Math.min(...ratios),
        maxRatio: Math.max(...ratios),
        passed: row.filter((r) => r.comparison.pass).length,
        ...(Object.keys(rowRatios).length > 0 && { rowRatios }),
      },
    });
  }
  return out;
}
