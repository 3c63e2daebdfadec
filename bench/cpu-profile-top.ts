/**
 * Summarises a V8 `.cpuprofile` (as written by `node --cpu-prof`, e.g. with
 * `BENCH_CPU_PROF=<dir> npm run bench`): the functions with the most self time, the functions with
 * the most inclusive time (themselves plus what they call), and self time grouped by package.
 *
 *   node --import tsx bench/cpu-profile-top.ts <file.cpuprofile> [--top 25] [--skip-ms 0] [--until-ms ∞]
 *
 * `--skip-ms` and `--until-ms` keep only that window, in ms since the process started (the bench
 * prints the window of its measured load; outside it are start-up, set-up and shutdown).
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const root = fileURLToPath(new URL("..", import.meta.url));
const PSEUDO = new Set(["(idle)", "(program)", "(garbage collector)", "(root)"]);

function where(url: string, line: number): string {
  if (!url) return "(native)";
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  const rel = path.startsWith(root) ? relative(root, path) : path;
  return `${rel}:${line + 1}`;
}

/** The package (or Hearth directory, or node internals) a frame's time belongs to. */
function owner(fn: string, url: string): string {
  if (PSEUDO.has(fn)) return fn;
  if (!url) return "(native)";
  if (url.startsWith("node:")) return "node:internal";
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  return path.startsWith(root) ? `hearth:${relative(root, path).split("/").slice(0, 2).join("/")}` : path;
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      top: { type: "string", default: "25" },
      "skip-ms": { type: "string", default: "0" },
      "until-ms": { type: "string", default: "Infinity" },
    },
  });
  const file = positionals[0];
  if (!file) throw new Error("usage: bench/cpu-profile-top.ts <file.cpuprofile> [--top N] [--skip-ms M] [--until-ms M]");
  const top = Number(values.top);
  const skipUs = Number(values["skip-ms"]) * 1000;
  const untilUs = Number(values["until-ms"]) * 1000;
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;

  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n: ProfileNode) => `${n.callFrame.functionName || "(anonymous)"}  ${where(n.callFrame.url, n.callFrame.lineNumber)}`;

  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const byOwner = new Map<string, number>();
  let t = profile.startTime;
  let windowUs = 0;
  let busyUs = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (t - profile.startTime < skipUs || t - profile.startTime > untilUs) return;
    windowUs += dt;
    const leaf = byId.get(id)!;
    const add = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + dt);
    add(self, label(leaf));
    add(byOwner, owner(leaf.callFrame.functionName, leaf.callFrame.url));
    if (leaf.callFrame.functionName !== "(idle)") busyUs += dt;
    // Each function once per sample, however deep it recurses.
    const seen = new Set<string>();
    for (let n: ProfileNode | undefined = leaf; n; n = byId.get(parent.get(n.id) ?? -1)) {
      const k = label(n);
      if (PSEUDO.has(n.callFrame.functionName) || seen.has(k)) continue;
      seen.add(k);
      add(inclusive, k);
    }
  });

  const print = (title: string, m: Map<string, number>, n: number) => {
    console.log(`\n${title}`);
    for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) {
      console.log(`${(us / 1000).toFixed(0).padStart(8)} ms ${((us / windowUs) * 100).toFixed(1).padStart(5)}%  ${k}`);
    }
  };
  console.log(`${file}: ${(windowUs / 1e6).toFixed(1)} s in the window, ${(busyUs / 1e6).toFixed(1)} s not idle`);
  print("self time by function", self, top);
  print("inclusive time by function", inclusive, top);
  print("self time by package", byOwner, 15);
}

main();
