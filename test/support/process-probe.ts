import { readdirSync, readFileSync } from "node:fs";

/** Pids of the processes whose environment says `NAME=value` (workers carry HEARTH_WORKER_ID and HEARTH_ENDPOINT_ID). */
export function pidsWithEnv(name: string, value: string): number[] {
  const needle = `${name}=${value}`;
  const out: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, "utf8").split("\0").includes(needle) && processState(Number(entry)) !== "Z") out.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return out;
}

/** The one-letter state of a process (R, S, T stopped, Z…), or undefined when it is gone. */
export function processState(pid: number): string | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, "utf8");
    return raw.slice(raw.lastIndexOf(")") + 2, raw.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}
