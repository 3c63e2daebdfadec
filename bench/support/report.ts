import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import type { BenchResult, Comparison } from "./bench-result.ts";
import { cpuSharesText } from "./cpu-usage.ts";

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  node: string;
  platform: string;
  release: string;
  totalMemMiB: number;
  /** 1, 5 and 15 minute load averages when the run started: other work on the machine skews every number. */
  loadAverage: number[];
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? "unknown",
    node: process.version,
    platform: os.platform(),
    release: os.release(),
    totalMemMiB: Math.round(os.totalmem() / 1024 / 1024),
    loadAverage: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

const fmt = (x: number, unit: string) => `${unit === "req/s" ? Math.round(x).toString() : x.toFixed(3)} ${unit}`;

function verdict(r: BenchResult): string {
  if (r.problems.length > 0) return "INVALID";
  return r.comparison.pass ? "pass" : "FAIL";
}

/** The compact table, then each benchmark's spread and any problem, loudly. */
export function printReport(results: BenchResult[]): void {
  const rows = [
    ["benchmark", "metric", "Hearth", "floor", "ratio", "target", "result"],
    ...results.map((r) => {
      const c: Comparison = r.comparison;
      return [r.name, c.metric, fmt(c.hearth, c.unit), fmt(c.floor, c.unit), c.ratio.toFixed(3), `${c.target.op} ${c.target.value}`, verdict(r)];
    }),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => cell.padEnd(widths[i]!)).join("  ");
  console.log("");
  console.log(line(rows[0]!));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows.slice(1)) console.log(line(row));
  console.log("");

  for (const r of results) {
    for (const side of ["hearth", "floor"] as const) {
      const s = r[side] as {
        latencyMs?: Record<string, number>;
        requestsPerSecond?: number;
        non2xx?: number;
        total2xx?: number;
        apiProfile?: { summarize?: string; error?: string };
        phasesMs?: Record<string, { p50: number; mean: number }>;
        rows?: Record<string, { vsFloor?: number; vsFloorOf?: string; note?: string; timingsMs: Record<string, { p50: number; mean: number }> }>;
      };
      const lat = s.latencyMs ? Object.entries(s.latencyMs).map(([k, v]) => `${k} ${v}`).join(", ") : "";
      const rps = s.requestsPerSecond !== undefined ? `${Math.round(s.requestsPerSecond)} req/s (${s.total2xx} 2xx, ${s.non2xx} non-2xx); ` : "";
      console.log(`  ${r.name} ${side.padEnd(6)} ${rps}latency ms: ${lat}`);
      const cpu = r.cpu[side];
      const pad = `  ${" ".repeat(r.name.length)} ${"".padEnd(6)}`;
      if (cpu) console.log(`${pad} cpu % of one core: ${cpuSharesText(cpu)}`);
      if (s.phasesMs) console.log(`${pad} timings: ${Object.entries(s.phasesMs).map(([k, v]) => `${k} p50 ${v.p50} mean ${v.mean}`).join("; ")}`);
      // Rows beside the comparison (e.g. one per start kind): each on its own line, with its p50 over the floor's.
      for (const [name, row] of Object.entries(s.rows ?? {})) {
        const vs = row.vsFloor !== undefined ? ` (${row.vsFloor}× the floor's ${row.vsFloorOf ?? "p50"})` : "";
        const timings = Object.entries(row.timingsMs).map(([k, v]) => `${k} p50 ${v.p50} mean ${v.mean}`).join("; ");
        console.log(`${pad} ${name}${vs}: ${timings}${row.note ? ` [${row.note}]` : ""}`);
      }
      if (s.apiProfile) console.log(`${pad} API profile: ${s.apiProfile.summarize ?? s.apiProfile.error}`);
    }
    const spread = (r as { spread?: { runs: number; ratios: number[]; minRatio: number; maxRatio: number; passed: number; rowRatios?: Record<string, number[]> } }).spread;
    if (spread) console.log(`  ${r.name} median of ${spread.runs} runs: ratios ${spread.ratios.join(", ")} (spread ${spread.minRatio}–${spread.maxRatio}; ${spread.passed} of ${spread.runs} met the target)`);
    for (const [row, ratios] of Object.entries(spread?.rowRatios ?? {})) console.log(`  ${r.name} ${row}, each run's ratio to the floor: ${ratios.join(", ")}`);
    for (const w of r.warnings) console.log(`  warning (${r.name}): ${w}`);
    for (const p of r.problems) console.log(`\n  !!!!! INVALID RUN (${r.name}): ${p} !!!!!`);
  }
  console.log("");
}

/** Writes `<name>-<timestamp>.json` and `latest.json` into `dir`; returns the first path. */
export async function writeResults(dir: string, name: string, startedAt: Date, payload: unknown): Promise<string> {
  await mkdir(dir, { recursive: true });
  // ISO 8601 with ':' and '.' as '-', so the name is valid on every filesystem.
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const file = join(dir, `${name}-${stamp}.json`);
  const text = `${JSON.stringify(payload, null, 2)}\n`;
  await writeFile(file, text);
  await writeFile(join(dir, "latest.json"), text);
  return file;
}
