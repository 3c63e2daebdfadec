import { readdirSync, readFileSync } from "node:fs";

/**
 * A group of processes whose CPU time is added up: one process alone, its descendants (not itself),
 * or every process with a name (`comm`, e.g. "postgres").
 */
export type CpuRole = { self: number } | { descendants: number } | { comm: string };

interface ProcStat {
  ppid: number;
  comm: string;
  /** utime + stime, in clock ticks. */
  ticks: number;
}

/** Linux USER_HZ; `getconf CLK_TCK` is 100 on every mainstream kernel. */
const TICKS_PER_SECOND = 100;

/** Every process's CPU time from /proc; empty where there is no /proc (the report then has no CPU section). */
function readProcs(): Map<number, ProcStat> {
  const procs = new Map<number, ProcStat>();
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return procs;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const raw = readFileSync(`/proc/${entry}/stat`, "utf8");
      // comm may hold spaces and parentheses: the fields after it start after the last ')'.
      const close = raw.lastIndexOf(")");
      const comm = raw.slice(raw.indexOf("(") + 1, close);
      const fields = raw.slice(close + 2).split(" ");
      // fields[0] is state (field 3): ppid is field 4, utime 14, stime 15.
      procs.set(Number(entry), { ppid: Number(fields[1]), comm, ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // exited while we read
    }
  }
  return procs;
}

function members(procs: Map<number, ProcStat>, role: CpuRole): Set<number> {
  if ("self" in role) return new Set(procs.has(role.self) ? [role.self] : []);
  if ("comm" in role) return new Set([...procs].filter(([, p]) => p.comm === role.comm).map(([pid]) => pid));
  const set = new Set<number>([role.descendants]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, p] of procs) {
      if (!set.has(pid) && set.has(p.ppid)) {
        set.add(pid);
        grew = true;
      }
    }
  }
  set.delete(role.descendants);
  return set;
}

/** CPU seconds each role used between `start()` and `stop()`, and that as % of one core over the wall time. */
export interface CpuShare {
  cpuSeconds: number;
  percentOfOneCore: number;
}

/**
 * Samples /proc at the start and end of a measured window. A process that started inside the
 * window counts from zero; one that ended inside it is lost (its time is not in /proc any more).
 */
export class CpuMeter {
  private before = new Map<number, ProcStat>();
  private startedAt = 0;

  constructor(private readonly roles: Record<string, CpuRole>) {}

  start(): void {
    this.before = readProcs();
    this.startedAt = performance.now();
  }

  stop(): Record<string, CpuShare> | undefined {
    const wallSeconds = (performance.now() - this.startedAt) / 1000;
    const after = readProcs();
    if (after.size === 0) return undefined;
    const out: Record<string, CpuShare> = {};
    for (const [name, role] of Object.entries(this.roles)) {
      let ticks = 0;
      for (const pid of members(after, role)) {
        const prev = this.before.get(pid);
        const now = after.get(pid)!;
        ticks += prev && prev.comm === now.comm ? now.ticks - prev.ticks : now.ticks;
      }
      const cpuSeconds = ticks / TICKS_PER_SECOND;
      out[name] = { cpuSeconds, percentOfOneCore: Math.round((cpuSeconds / wallSeconds) * 1000) / 10 };
    }
    return out;
  }
}
