import { open, type FileHandle } from "node:fs/promises";
import type { Readable } from "node:stream";
import { planRanges, type ByteRange } from "../../core/weights/range-plan.ts";
import { HashThread } from "./hash-thread.ts";

export interface RangedDownloadOptions {
  /** The object's length in bytes (from a HEAD or a first ranged response). */
  size: number;
  /** Bytes per ranged request. */
  partBytes: number;
  /** Ranged requests in flight at once. */
  concurrency: number;
  /** Starts the request for one range and resolves with its body. */
  fetchRange(range: ByteRange, signal: AbortSignal): Promise<Readable>;
  /** Written in place; created (truncated) here. */
  file: string;
  signal?: AbortSignal;
  /** Bytes received, as they arrive (progress). */
  onBytes?(bytes: number): void;
  /** Also compute the MD5 (to check a single-part S3 ETag). Default false. */
  md5?: boolean;
}

/** Hash threads are told of new final bytes at most this often (bytes), and at every range's end. */
const ADVANCE_STEP = 1024 * 1024;

/**
 * Downloads an object as parallel ranged requests written at their offsets in one file, and
 * hashes it in order while it arrives: a hash thread per algorithm reads back (from the page
 * cache) the prefix that is complete, so the digest is ready soon after the last byte lands
 * without a second pass over the file and without the hash slowing the sockets. A range whose body
 * ends short or runs long fails the download (a cut connection, a confused server).
 */
export async function rangedDownload(o: RangedDownloadOptions): Promise<{ sha256: string; md5?: string }> {
  const ranges = planRanges(o.size, o.partBytes);
  const written = ranges.map(() => 0);
  const stop = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  const fd = await open(o.file, "w");
  const threads = { sha256: new HashThread(o.file, "sha256"), ...(o.md5 && { md5: new HashThread(o.file, "md5") }) };
  let complete = 0; // every byte before this is written
  let told = 0;
  let failure: unknown;

  const advance = (force: boolean) => {
    for (let i = Math.floor(complete / o.partBytes); i < ranges.length; i++) {
      const r = ranges[i]!;
      complete = r.start + (written[i] ?? 0);
      if (complete <= r.end) break;
    }
    if (complete - told >= ADVANCE_STEP || (force && complete > told)) {
      told = complete;
      threads.sha256.advance(complete);
      threads.md5?.advance(complete);
    }
  };

  const fetchOne = async (i: number): Promise<void> => {
    const r = ranges[i]!;
    const body = await o.fetchRange(r, signal);
    let pos = r.start;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (pos + chunk.length > r.end + 1) throw new Error(`range ${r.start}-${r.end} sent more than asked`);
      await writeAll(fd, chunk, pos);
      pos += chunk.length;
      written[i] = pos - r.start;
      o.onBytes?.(chunk.length);
      advance(false);
    }
    if (pos !== r.end + 1) throw new Error(`range ${r.start}-${r.end} ended after ${pos - r.start} of ${r.end - r.start + 1} bytes`);
    advance(true);
  };

  let next = 0;
  const lane = async () => {
    while (next < ranges.length && failure === undefined) {
      const i = next++;
      try {
        await fetchOne(i);
      } catch (err) {
        failure ??= err;
        stop.abort();
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency, ranges.length)) }, lane));
  } finally {
    await fd.close();
  }
  if (failure !== undefined) {
    await Promise.all([threads.sha256.abandon(), threads.md5?.abandon()]);
    throw failure;
  }
  const [sha256, md5] = await Promise.all([threads.sha256.finish(o.size), threads.md5?.finish(o.size)]);
  return { sha256, ...(md5 !== undefined && { md5 }) };
}

async function writeAll(fd: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fd.write(chunk, off, chunk.length - off, position + off);
    off += bytesWritten;
  }
}
