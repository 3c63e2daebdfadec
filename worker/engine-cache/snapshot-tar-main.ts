/**
 * The process that touches an engine's cache directories, run by the worker as the engine's own
 * user (HEARTH_ENGINE_USER), never as the worker's: the directories are the engine's, written by a
 * tenant's model and flags, and may be named by the tenant (VLLM_CACHE_ROOT in `engine.env`). As
 * that user, a planted symbolic link or a hostile archive reaches nothing the engine could not
 * reach itself. Built to dist/ like the worker (scripts/build.mjs).
 *
 *   create   the directories as a .tar.gz on stdout
 *   extract  a .tar.gz from stdin into those of the directories that are absent or empty
 *
 * argv[2] is the job as JSON (`tarJob`); the outcome is one JSON line on fd 3 (`tarReport`); exit 1
 * with the reason on stderr when it fails. An extract that fails removes what it wrote.
 */
import { constants, writeSync } from "node:fs";
import { mkdir, open, readdir, lstat, rm } from "node:fs/promises";
import { dirname, join, relative, isAbsolute, sep } from "node:path";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { tarJob, type TarJob, type TarReport } from "./snapshot-tar-protocol.ts";
import { writeSnapshot, SnapshotTooLarge } from "./snapshot-writer.ts";
import { readSnapshot } from "./snapshot-reader.ts";
import type { ResolvedCacheDir } from "../../core/weights/engine-cache-paths.ts";

function report(r: TarReport): void {
  writeSync(3, `${JSON.stringify(r)}\n`);
}

async function create(job: Extract<TarJob, { mode: "create" }>): Promise<void> {
  // Level 1: the archive is made beside an engine serving jobs, on CPUs it needs; compiled code gains little from harder work.
  const gzip = createGzip({ level: 1 });
  const piped = pipeline(gzip, process.stdout);
  try {
    const written = await writeSnapshot(job.dirs, gzip, job.maxBytes);
    gzip.end();
    await piped;
    report({ ok: true, mode: "create", ...written });
  } catch (err) {
    if (!(err instanceof SnapshotTooLarge)) throw err;
    piped.catch(() => {}); // stdout is cut short on purpose: the worker discards what it got
    gzip.destroy();
    report({ ok: false, reason: "too-large", message: err.message });
  }
}

/** A declared directory the snapshot may fill: absent (created) or an empty directory. One holding anything is the engine's own and kept. */
async function restorable(dir: ResolvedCacheDir): Promise<boolean> {
  const st = await lstat(dir.path).catch(() => undefined);
  if (st === undefined) return true;
  return st.isDirectory() && (await readdir(dir.path)).length === 0;
}

async function extract(job: Extract<TarJob, { mode: "extract" }>): Promise<void> {
  const targets = new Map<string, string>();
  const kept: string[] = [];
  for (const dir of job.dirs) {
    if (await restorable(dir)) targets.set(dir.id, dir.path);
    else kept.push(dir.id);
  }
  let files = 0;
  const touched = new Set<string>();
  try {
    const { bytes } = await readSnapshot(process.stdin, { ids: new Set(job.dirs.map((d) => d.id)), maxBytes: job.maxBytes }, async (entry, place) => {
      const root = targets.get(place.id);
      if (root === undefined) return void entry.resume();
      const target = place.rel === "" ? root : join(root, place.rel);
      const rel = relative(root, target);
      // Checked by readSnapshot already; a second look costs nothing.
      if (rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) throw new Error(`${entry.path} leaves its directory`);
      touched.add(place.id);
      if (place.directory) {
        await mkdir(target, { recursive: true, mode: 0o755 });
        return void entry.resume();
      }
      await mkdir(dirname(target), { recursive: true, mode: 0o755 });
      // O_EXCL and O_NOFOLLOW: never through a link, never over a file that is there.
      const handle = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, (entry.mode ?? 0o644) & 0o755);
      try {
        for await (const chunk of entry) await handle.write(chunk as Buffer);
        if (entry.mtime) await handle.utimes(entry.mtime, entry.mtime);
      } finally {
        await handle.close();
      }
      files++;
    });
    report({ ok: true, mode: "extract", restored: [...touched], kept, files, bytes });
  } catch (err) {
    // Only directories that were empty were written to: emptying them again leaves the engine as it would have been.
    for (const id of touched) {
      const root = targets.get(id) as string;
      for (const name of await readdir(root).catch(() => [] as string[])) await rm(join(root, name), { recursive: true, force: true });
    }
    throw err;
  }
}

async function main(): Promise<void> {
  const job = tarJob.parse(JSON.parse(process.argv[2] ?? ""));
  if (job.mode === "create") await create(job);
  else await extract(job);
}

main().catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  if (e.code === "ENGINE_CACHE_REFUSED") report({ ok: false, reason: "refused", message: String(e.message).slice(0, 500) });
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
