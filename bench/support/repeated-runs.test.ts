import { describe, expect, it } from "vitest";
import { compare, type BenchResult } from "./bench-result.ts";
import { medianRuns, runsOf } from "./repeated-runs.ts";

const row = (name: string, hearth: number, problems: string[] = []): BenchResult => ({
  name,
  comparison: compare("req/s", "req/s", hearth, 100, { op: ">=", value: 0.4 }),
  problems,
  warnings: [],
  settings: {},
  hearth: { hearth },
  floor: {},
  cpu: {},
});

describe("medianRuns", () => {
  it("keeps each run's ratio of the rows beside the comparison", () => {
    const withRow = (hearth: number, vsFloor: number | undefined): BenchResult => ({
      ...row("a", hearth),
      floor: { rows: { "over HTTP": { ...(vsFloor !== undefined && { vsFloor }), timingsMs: {} }, "no ratio": { timingsMs: {} } } },
    });
    const folded = medianRuns([[withRow(30, 1.9)], [withRow(50, 2.1)], [withRow(10, undefined)]]);
    expect(folded[0]!.spread?.rowRatios).toEqual({ "floor: over HTTP": [1.9, 2.1] });
    expect(medianRuns([[row("a", 30)], [row("a", 50)]])[0]!.spread?.rowRatios).toBeUndefined();
  });

  it("shows the median run of each row with the spread of all runs", () => {
    const folded = medianRuns([[row("a", 30)], [row("a", 50)], [row("a", 10)], [row("a", 45)], [row("a", 20)]]);
    expect(folded).toHaveLength(1);
    expect(folded[0]!.comparison.ratio).toBe(0.3);
    expect(folded[0]!.hearth).toEqual({ hearth: 30 });
    expect(folded[0]!.spread).toEqual({ runs: 5, ratios: [0.3, 0.5, 0.1, 0.45, 0.2], medianRatio: 0.3, minRatio: 0.1, maxRatio: 0.5, passed: 2 });
  });

  it("takes the lower middle of an even count, and keeps every run's problems", () => {
    const folded = medianRuns([[row("a", 10)], [row("a", 40, ["child died"])], [row("a", 20)], [row("a", 30)]]);
    expect(folded[0]!.comparison.ratio).toBe(0.2);
    expect(folded[0]!.problems).toEqual(["run 2: child died"]);
  });

  it("folds each row of a multi-row benchmark on its own", () => {
    const folded = medianRuns([
      [row("a", 10), row("b", 90)],
      [row("a", 30), row("b", 70)],
      [row("a", 20), row("b", 80)],
    ]);
    expect(folded.map((r) => [r.name, r.comparison.ratio])).toEqual([["a", 0.2], ["b", 0.8]]);
  });

  it("leaves one run as it is", () => {
    const one = [row("a", 10)];
    expect(medianRuns([one])).toBe(one);
  });
});

describe("runsOf", () => {
  it("runs the issue's three ratio benchmarks five times unless BENCH_RUNS says otherwise", () => {
    expect(runsOf("run-throughput", undefined)).toBe(5);
    expect(runsOf("llm-stream", undefined)).toBe(5);
    expect(runsOf("cold-start", undefined)).toBe(1);
    expect(runsOf("run-throughput", 2)).toBe(2);
  });
});
