import { constants, type Stats } from "node:fs";
import { lstat, open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { once } from "node:events";
import type { Writable } from "node:stream";
import { Header, Pax } from "tar";
import type { ResolvedCacheDir } from "../../core/weights/engine-cache-paths.ts";

/** The directories hold more than the snapshot may (HEARTH_ENGINE_CACHE_MAX_BYTES). */
export class SnapshotTooLarge extends Error {
  readonly code = "ENGINE_CACHE_TOO_LARGE";
}

export interface WrittenSnapshot {
  /** The ids of the directories that existed and went in. */
  dirs: string[];
  files: number;
  /** Bytes of the files (what a restore writes to disk). */
  bytes: number;
  /** Entries left out: symbolic links, sockets, devices, FIFOs (a snapshot holds files and directories only). */
  skipped: number;
}

const BLOCK = 512;
const READ_CHUNK = 1 << 20;

/**
 * Writes the declared directories as an uncompressed tar stream to `out`: each directory under its
 * id (`vllm/…`), regular files and directories only, names sorted (the same tree gives the same
 * bytes, mtimes aside). Runs as the engine's user (worker/engine-cache/snapshot-tar-main.ts), so it
 * reads nothing the engine could not: a symbolic link the engine planted is skipped, never followed,
 * and each file is opened with O_NOFOLLOW and checked again on its descriptor. A file that shrinks
 * while it is read fails the snapshot rather than storing a torn copy. Throws SnapshotTooLarge as
 * soon as the files exceed `maxBytes`. Why our own writer over node-tar's Pack: Pack archives one
 * tree relative to one cwd, and a snapshot is several trees anywhere on disk, each renamed to its id.
 */
export async function writeSnapshot(dirs: readonly ResolvedCacheDir[], out: Writable, maxBytes: number): Promise<WrittenSnapshot> {
  const written: WrittenSnapshot = { dirs: [], files: 0, bytes: 0, skipped: 0 };
  const write = async (chunk: Buffer) => {
    if (!out.write(chunk)) await once(out, "drain");
  };

  const entry = async (path: string, st: Stats, type: "File" | "Directory", size: number) => {
    const header = new Header({ path, type, size, mode: type === "Directory" || (st.mode & 0o111) !== 0 ? 0o755 : 0o644, uid: 0, gid: 0, mtime: st.mtime });
    // A name over ustar's 255 characters (or a size over 8 GiB) needs a pax header before the entry's own.
    if (header.encode()) await write(new Pax({ path, size, mtime: st.mtime }).encode());
    await write(header.block as Buffer);
  };

  const file = async (abs: string, name: string) => {
    const handle = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await handle.stat();
      if (!st.isFile()) return void written.skipped++;
      written.bytes += st.size;
      if (written.bytes > maxBytes) throw new SnapshotTooLarge(`the cache directories hold more than ${maxBytes} bytes`);
      await entry(name, st, "File", st.size);
      let left = st.size;
      while (left > 0) {
        const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, left));
        const { bytesRead } = await handle.read(buf, 0, buf.length, null);
        if (bytesRead === 0) throw new Error(`${abs} shrank while it was archived`);
        await write(buf.subarray(0, bytesRead));
        left -= bytesRead;
      }
      const pad = st.size % BLOCK;
      if (pad !== 0) await write(Buffer.alloc(BLOCK - pad));
      written.files++;
    } finally {
      await handle.close();
    }
  };

  const walk = async (abs: string, name: string): Promise<void> => {
    for (const child of (await readdir(abs)).sort()) {
      const childAbs = join(abs, child);
      const childName = `${name}/${child}`;
      const st = await lstat(childAbs).catch(() => undefined); // gone meanwhile: the engine cleans up too
      if (st === undefined) continue;
      if (st.isDirectory()) {
        await entry(`${childName}/`, st, "Directory", 0);
        await walk(childAbs, childName);
      } else if (st.isFile()) {
        await file(childAbs, childName).catch((err: unknown) => {
          if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
          if ((err as NodeJS.ErrnoException).code === "ELOOP") return void written.skipped++; // became a link after lstat
          throw err;
        });
      } else {
        written.skipped++;
      }
    }
  };

  for (const dir of dirs) {
    const st = await lstat(dir.path).catch(() => undefined);
    if (st === undefined || !st.isDirectory()) continue; // absent, or a link or file where a directory should be
    written.dirs.push(dir.id);
    await entry(`${dir.id}/`, st, "Directory", 0);
    await walk(dir.path, dir.id);
  }
  await write(Buffer.alloc(2 * BLOCK)); // end of archive
  return written;
}
