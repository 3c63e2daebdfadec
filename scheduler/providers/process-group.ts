import { readdirSync, readFileSync } from "node:fs";

/*
 * A worker session's process group on Linux: the worker leads it (spawned detached, so its pid is
 * the group's id) and its engine and the engine's children belong to it. Read from /proc, so a
 * group is signalled and measured whole, whatever the worker did with its children.
 */

/** Sends `signal` to every process of group `pgid`; false when the group is empty (ESRCH). */
export function signalGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    throw err;
  }
}

/** The `/proc/<pid>/stat` fields after the command (which may hold spaces and parentheses); undefined when gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, "utf8");
    return raw.slice(raw.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/**
 * The process's start time in clock ticks since boot (stat field 22): with the pid, it names one
 * process for good (a pid alone may be reused once the process is gone). Undefined when gone.
 */
export function processStartTicks(pid: number): string | undefined {
  // Fields after the command start at field 3 (state): field 22 is index 19.
  return statFields(pid)?.[19];
}

/** Pids of the live processes in group `pgid` (zombies left out). */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    // f[0] state, f[2] process group.
    if (f && f[2] === String(pgid) && f[0] !== "Z") out.push(Number(name));
  }
  return out;
}

/** Resident memory of the whole group, bytes: what pausing it keeps in RAM. */
export function groupResidentBytes(pgid: number): number {
  let total = 0;
  for (const pid of groupMembers(pgid)) {
    try {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
