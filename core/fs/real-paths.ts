import { realpath } from "node:fs/promises";
import { dirname, isAbsolute, relative, sep } from "node:path";

/** `path` lies strictly below `dir` (both real paths: symlinks resolved, no `..`). */
export function isInside(dir: string, path: string): boolean {
  const rel = relative(dir, path);
  return rel !== "" && rel !== ".." && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/** The real path of the nearest ancestor of `path` that resolves; `..` segments are left to the OS, as for the file itself. */
export async function realAncestor(path: string): Promise<string | undefined> {
  for (let p = dirname(path); ; p = dirname(p)) {
    const real = await realpath(p).catch(() => undefined);
    if (real !== undefined) return real;
    if (dirname(p) === p) return undefined;
  }
}

/** True while a process with this pid exists (EPERM: it exists, as another user's). */
export function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
