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

/** Busy jiffies of the whole machine (all CPUs, every state but idle and iowait), from /proc/stat. */
function machineBusyTicks(): number | undefined {
  try {
    const cpu = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    return cpu.slice(0, 8).reduce((a, b, i) => (i === 3 || i === 4 ? a : a + b), 0);
  } catch {
    return undefined;
  }
}

/** Name of the extra role `stop()` adds: machine busy time not in any role (other processes, kernel interrupts). */
export const REST_OF_MACHINE = "rest of machine";

/** CPU seconds each role used between `start()` and `stop()`, and that as % of one core over the wall time. */
export interface CpuShare {
  cpuSeconds: number;
  percentOfOneCore: number;
}

/** "bench 12.1, api 73.7, …": each role's share of one core, as the report prints it. */
export function cpuSharesText(cpu: Record<string, CpuShare> | undefined): string {
  return Object.entries(cpu ?? {})
    .map(([k, v]) => `${k} ${v.percentOfOneCore}`)
    .join(", ");
}

/**
 * Samples /proc at the start and end of a measured window. A process that started inside the
 * window counts from zero; one that ended inside it is lost (its time is not in /proc any more).
 */
export class CpuMeter {
  private before = new Map<number, ProcStat>();
  private machineBefore: number | undefined;
  private startedAt = 0;

  constructor(private readonly roles: Record<string, CpuRole>) {}

  start(): void {
    this.before = readProcs();
    this.machineBefore = machineBusyTicks();
    this.startedAt = performance.now();
  }

  stop(): Record<string, CpuShare> | undefined {
    const wallSeconds = (performance.now() - this.startedAt) / 1000;
    const machineAfter = machineBusyTicks();
    const after = readProcs();
    if (after.size === 0) return undefined;
    const share = (ticks: number): CpuShare => {
      const cpuSeconds = ticks / TICKS_PER_SECOND;
      return { cpuSeconds, percentOfOneCore: Math.round((cpuSeconds / wallSeconds) * 1000) / 10 };
    };
    const out: Record<string, CpuShare> = {};
    let counted = 0;
    for (const [name, role] of Object.entries(this.roles)) {
      let ticks = 0;
      for (const pid of members(after, role)) {
        const prev = this.before.get(pid);
        const now = after.get(pid)!;
        ticks += prev && prev.comm === now.comm ? now.ticks - prev.ticks : now.ticks;
      }
      counted += ticks;
      out[name] = share(ticks);
    }
    if (machineAfter !== undefined && this.machineBefore !== undefined) {
      out[REST_OF_MACHINE] = share(Math.max(0, machineAfter - this.machineBefore - counted));
    }
    return out;
  }
}

/**
 * CPU per role summed over many short windows (`start`/`stop` pairs): the share of one core each
 * role used during those windows only, for measurements that alternate with others.
 */
export class CpuAccumulator {
  private readonly meter: CpuMeter;
  private readonly cpuSeconds = new Map<string, number>();
  private wallMs = 0;
  private startedAt = 0;

  constructor(roles: Record<string, CpuRole>) {
    this.meter = new CpuMeter(roles);
  }

  start(): void {
    this.startedAt = performance.now();
    this.meter.start();
  }

  stop(): void {
    const shares = this.meter.stop();
    this.wallMs += performance.now() - this.startedAt;
    for (const [name, share] of Object.entries(shares ?? {})) this.cpuSeconds.set(name, (this.cpuSeconds.get(name) ?? 0) + share.cpuSeconds);
  }

  result(): Record<string, CpuShare> | undefined {
    if (this.wallMs === 0 || this.cpuSeconds.size === 0) return undefined;
    const out: Record<string, CpuShare> = {};
    for (const [name, cpuSeconds] of this.cpuSeconds) out[name] = { cpuSeconds, percentOfOneCore: Math.round((cpuSeconds / (this.wallMs / 1000)) * 1000) / 10 };
    return out;
  }
}
