/**
 * Prints the functions with the most self time in a V8 `.cpuprofile` (as written by
 * `node --cpu-prof`, e.g. with `BENCH_CPU_PROF=<dir> npm run bench`), and the same grouped by package.
 *
 *   node --import tsx bench/cpu-profile-top.ts <file.cpuprofile> [top=25]
 */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
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

function where(url: string, line: number): string {
  if (!url) return "(native)";
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  const rel = path.startsWith(root) ? relative(root, path) : path;
  return `${rel}:${line + 1}`;
}

/** "node_modules/<pkg>", "hearth:<dir>", "node:internal" or "(native)": where a frame's time belongs. */
function owner(url: string): string {
  if (!url) return "(native/gc/idle)";
  if (url.startsWith("node:")) return "node:internal";
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  const path = url.startsWith("file://") ? fileURLToPath(url) : url;
  return path.startsWith(root) ? `hearth:${relative(root, path).split("/").slice(0, 2).join("/")}` : path;
}

function main(): void {
  const [file, topArg] = process.argv.slice(2);
  if (!file) throw new Error("usage: bench/cpu-profile-top.ts <file.cpuprofile> [top]");
  const top = Number(topArg ?? 25);
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const totalUs = profile.endTime - profile.startTime;

  const byFunction = new Map<string, number>();
  const byOwner = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    const name = `${f.functionName || "(anonymous)"}  ${where(f.url, f.lineNumber)}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + us);
    const o = ["(idle)", "(program)", "(garbage collector)"].includes(f.functionName) ? f.functionName : owner(f.url);
    byOwner.set(o, (byOwner.get(o) ?? 0) + us);
  }
  const print = (title: string, m: Map<string, number>, n: number) => {
    console.log(`\n${title}`);
    for (const [k, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, n)) {
      console.log(`${(us / 1000).toFixed(0).padStart(8)} ms ${((us / totalUs) * 100).toFixed(1).padStart(5)}%  ${k}`);
    }
  };
  console.log(`${file}: ${(totalUs / 1e6).toFixed(1)} s profiled`);
  print("self time by function", byFunction, top);
  print("self time by package", byOwner, 15);
}

main();
