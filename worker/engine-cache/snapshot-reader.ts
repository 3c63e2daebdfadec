import { Parser, type ReadEntry } from "tar";
import { checkArchiveEntry, MAX_ARCHIVE_ENTRIES } from "../../core/weights/engine-cache-paths.ts";

/** A snapshot that may not be restored: an entry of a kind or place no snapshot of ours holds, or more than the limits. */
export class SnapshotRefused extends Error {
  readonly code = "ENGINE_CACHE_REFUSED";
}

export interface SnapshotLimits {
  /** The declared directories' ids: every entry must lie under one. */
  ids: ReadonlySet<string>;
  /** Most bytes the files may hold together (HEARTH_ENGINE_CACHE_MAX_BYTES). */
  maxBytes: number;
}

/** Where an accepted entry goes: `rel` under the declared directory `id` (`rel` empty: the directory itself). */
export interface EntryPlace {
  id: string;
  rel: string;
  directory: boolean;
}

/**
 * Reads a snapshot (.tar.gz) from `input`, checking every entry with `checkArchiveEntry` (regular
 * files and directories under the declared ids only: no links, devices, absolute paths or `..`),
 * no entry twice, and the entry count and total size against the limits; each accepted entry is
 * handed to `onEntry`, which must consume it (or `resume()` it). Strict: a damaged header fails the
 * read. Rejects with SnapshotRefused at the first refused entry, which `onEntry` never sees; a caller
 * that writes entries undoes what it wrote (snapshot-tar-main.ts does).
 */
export async function readSnapshot(input: AsyncIterable<Buffer>, limits: SnapshotLimits, onEntry: (entry: ReadEntry, place: EntryPlace) => Promise<void>): Promise<{ entries: number; bytes: number }> {
  let entries = 0;
  let bytes = 0;
  const seen = new Set<string>();
  const handlers: Promise<void>[] = [];
  let failure: unknown;
  const parser = new Parser({ strict: true });
  const fail = (err: unknown) => {
    failure ??= err;
  };
  parser.on("entry", (entry: ReadEntry) => {
    if (failure !== undefined) return entry.resume();
    const verdict = checkArchiveEntry({ path: entry.path, type: entry.type, size: entry.size ?? 0 }, limits.ids);
    const key = entry.path.replace(/\/$/, "");
    if (!verdict.ok) fail(new SnapshotRefused(verdict.reason));
    else if (seen.has(key)) fail(new SnapshotRefused(`${JSON.stringify(entry.path)} appears twice`));
    else if (++entries > MAX_ARCHIVE_ENTRIES) fail(new SnapshotRefused(`more than ${MAX_ARCHIVE_ENTRIES} entries`));
    else if ((bytes += entry.size ?? 0) > limits.maxBytes) fail(new SnapshotRefused(`the files hold more than ${limits.maxBytes} bytes`));
    if (failure !== undefined || !verdict.ok) return entry.resume();
    seen.add(key);
    handlers.push(onEntry(entry, { id: verdict.id, rel: verdict.rel, directory: verdict.directory }).catch((err: unknown) => {
      fail(err);
      entry.resume();
    }));
  });
  const done = new Promise<void>((resolve, reject) => {
    parser.on("end", resolve);
    parser.on("error", reject);
  });
  // The parser reports through events; an error also settles `done`, observed below.
  done.catch(fail);

  for await (const chunk of input) {
    if (failure !== undefined) break;
    if (!parser.write(chunk)) {
      // Until the entry being read is consumed; an error ends the wait too (and is in `failure`).
      await new Promise<void>((resolve) => {
        const go = () => {
          parser.off("drain", go);
          parser.off("error", go);
          resolve();
        };
        parser.on("drain", go);
        parser.on("error", go);
      });
    }
  }
  if (failure === undefined) {
    parser.end();
    await done.catch(() => {});
  }
  await Promise.all(handlers);
  if (failure !== undefined) throw failure;
  return { entries, bytes };
}
