import { isAbsolute, join, normalize, relative, sep } from "node:path";
import type { EngineCacheDir } from "../engine/engine-profiles.ts";

/**
 * Where an engine's declared cache directories are, and which entries of a snapshot may be written
 * back into them. Pure: the worker and its unprivileged archive process both call these.
 */

/** One declared directory, resolved for one engine process. */
export interface ResolvedCacheDir {
  id: string;
  /** Absolute, normalised. */
  path: string;
}

/** A declared directory left out, and why (logged). */
export interface SkippedCacheDir {
  id: string;
  reason: string;
}

/**
 * The directories `dirs` name in the engine's environment `env` (as the engine will get it: HOME and
 * TMPDIR its own), for an engine running as `userName`. A variable that is set wins even when its
 * value is unusable (relative): the engine would use that value, so guessing another place would
 * archive the wrong directory; such a directory is skipped. A directory equal to or inside one
 * already resolved is skipped too (its files are in that one's snapshot already).
 */
export function resolveCacheDirs(dirs: readonly EngineCacheDir[], env: Readonly<Record<string, string | undefined>>, userName: string): { dirs: ResolvedCacheDir[]; skipped: SkippedCacheDir[] } {
  const resolved: ResolvedCacheDir[] = [];
  const skipped: SkippedCacheDir[] = [];
  for (const dir of dirs) {
    const at = dir.locations.find((l) => env[l.variable] !== undefined && env[l.variable] !== "");
    if (at === undefined) {
      skipped.push({ id: dir.id, reason: `none of ${dir.locations.map((l) => l.variable).join(", ")} is set` });
      continue;
    }
    const base = env[at.variable] as string;
    if (!isAbsolute(base) || base.includes("\0")) {
      skipped.push({ id: dir.id, reason: `${at.variable} is not an absolute path` });
      continue;
    }
    if (at.path?.includes("{user}") && !/^[A-Za-z0-9._-]+$/.test(userName)) {
      skipped.push({ id: dir.id, reason: `user name ${JSON.stringify(userName)} cannot name a directory` });
      continue;
    }
    const path = normalize(at.path === undefined ? base : join(base, at.path.replaceAll("{user}", userName))).replace(/\/+$/, "") || "/";
    if (path === "/") {
      skipped.push({ id: dir.id, reason: `${at.variable} resolves to /` });
      continue;
    }
    const holder = resolved.find((r) => isWithin(r.path, path) || isWithin(path, r.path));
    if (holder !== undefined) {
      skipped.push({ id: dir.id, reason: `overlaps ${holder.id} (${holder.path})` });
      continue;
    }
    resolved.push({ id: dir.id, path });
  }
  return { dirs: resolved, skipped };
}

/** True when `inner` is `outer` or lies below it. */
function isWithin(outer: string, inner: string): boolean {
  const rel = relative(outer, inner);
  return rel === "" || (!rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel));
}

/** Entry types a snapshot may hold, named as node-tar names them. Links, devices and FIFOs never: see `checkArchiveEntry`. */
const ALLOWED_TYPES = new Set(["File", "Directory"]);

/** Most entries a snapshot may hold (Triton and Inductor caches are many small files). */
export const MAX_ARCHIVE_ENTRIES = 200_000;

/** A snapshot entry, as the tar parser reports it. */
export interface ArchiveEntry {
  path: string;
  type: string;
  size: number;
}

export type EntryVerdict = { ok: true; id: string; rel: string; directory: boolean } | { ok: false; reason: string };

/**
 * Whether an entry of a snapshot may be written, and where: `<id>/<rel>` under the declared
 * directory `id`. Refused: a type other than a regular file or directory (a symlink or hard link
 * could point a later entry outside the directory; a device file opens hardware), an absolute
 * path, a `..`, `.` or empty segment, a backslash or NUL, a top-level folder no declared directory
 * has, and the top-level folder itself as a file. Whoever restores refuses a whole archive when one
 * entry is refused: a snapshot made by `worker/engine-cache` never holds such an entry, so one that
 * does was not made by it.
 */
export function checkArchiveEntry(entry: ArchiveEntry, ids: ReadonlySet<string>): EntryVerdict {
  const { path, type } = entry;
  if (!ALLOWED_TYPES.has(type)) return { ok: false, reason: `${JSON.stringify(path)} is a ${type}, not a regular file or directory` };
  if (!Number.isSafeInteger(entry.size) || entry.size < 0) return { ok: false, reason: `${JSON.stringify(path)} has an invalid size` };
  if (path.length === 0 || path.length > 4096) return { ok: false, reason: "an entry path is empty or longer than 4096 characters" };
  if (path.includes("\0") || path.includes("\\")) return { ok: false, reason: `${JSON.stringify(path)} holds a NUL or a backslash` };
  if (path.startsWith("/")) return { ok: false, reason: `${JSON.stringify(path)} is absolute` };
  const directory = type === "Directory";
  const trimmed = directory && path.endsWith("/") ? path.slice(0, -1) : path;
  const segments = trimmed.split("/");
  for (const seg of segments) {
    if (seg === "..") return { ok: false, reason: `${JSON.stringify(path)} climbs out with ..` };
    if (seg === "" || seg === ".") return { ok: false, reason: `${JSON.stringify(path)} has an empty or . segment` };
    if (Buffer.byteLength(seg) > 255) return { ok: false, reason: `${JSON.stringify(path)} has a segment over 255 bytes` };
  }
  const [id, ...rest] = segments as [string, ...string[]];
  if (!ids.has(id)) return { ok: false, reason: `${JSON.stringify(path)} is outside the declared directories (${[...ids].join(", ")})` };
  if (rest.length === 0 && !directory) return { ok: false, reason: `${JSON.stringify(path)} replaces a declared directory with a file` };
  return { ok: true, id, rel: rest.join("/"), directory };
}
