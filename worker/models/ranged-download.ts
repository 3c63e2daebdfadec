import { createHash, type Hash } from "node:crypto";
import { open, type FileHandle } from "node:fs/promises";
import type { Readable } from "node:stream";
import { planRanges, type ByteRange } from "../../core/weights/range-plan.ts";

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

const READ_CHUNK = 4 * 1024 * 1024;

/**
 * Downloads an object as parallel ranged requests written at their offsets in one file, and
 * hashes it in order while it arrives: the range at the hash frontier is hashed from memory as it
 * streams, and what other lanes wrote ahead of the frontier is read back (from the page cache)
 * once the frontier reaches it. So the digest is ready when the last byte lands, without a second
 * pass over the file. A range whose body ends short fails the download (a cut connection).
 */
export async function rangedDownload(o: RangedDownloadOptions): Promise<{ sha256: string; md5?: string }> {
  const ranges = planRanges(o.size, o.partBytes);
  const written = ranges.map(() => 0);
  const hashes: Hash[] = [createHash("sha256"), ...(o.md5 ? [createHash("md5")] : [])];
  const stop = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  const fd = await open(o.file, "w+"); // read back too: the hash follows the writes
  let hashedUpTo = 0;
  let catchingUp: Promise<void> | undefined;
  let failure: unknown;

  /** The end of the bytes written contiguously from the hash frontier on. */
  const frontier = (): number => {
    let end = hashedUpTo;
    for (let i = Math.floor(hashedUpTo / o.partBytes); i < ranges.length; i++) {
      const r = ranges[i]!;
      end = r.start + (written[i] ?? 0);
      if (end <= r.end) break;
    }
    return Math.max(end, hashedUpTo);
  };
  const hash = (buf: Buffer) => {
    for (const h of hashes) h.update(buf);
    hashedUpTo += buf.length;
  };
  const catchUp = async (): Promise<void> => {
    const buf = Buffer.allocUnsafe(READ_CHUNK);
    for (let end = frontier(); hashedUpTo < end; end = frontier()) {
      const n = Math.min(READ_CHUNK, end - hashedUpTo);
      const { bytesRead } = await fd.read(buf, 0, n, hashedUpTo);
      if (bytesRead === 0) throw new Error(`read back nothing at ${hashedUpTo}`);
      hash(buf.subarray(0, bytesRead));
    }
  };
  const kick = () => {
    if (catchingUp !== undefined || failure !== undefined) return;
    catchingUp = catchUp()
      .catch((err: unknown) => {
        failure ??= err;
        stop.abort();
      })
      .finally(() => {
        catchingUp = undefined;
        if (hashedUpTo < frontier()) kick();
      });
  };

  const fetchOne = async (i: number): Promise<void> => {
    const r = ranges[i]!;
    const body = await o.fetchRange(r, signal);
    let pos = r.start;
    for await (const chunk of body as AsyncIterable<Buffer>) {
      if (pos + chunk.length > r.end + 1) throw new Error(`range ${r.start}-${r.end} sent more than asked`);
      await writeAll(fd, chunk, pos);
      written[i] = (written[i] ?? 0) + chunk.length;
      o.onBytes?.(chunk.length);
      if (catchingUp === undefined && pos === hashedUpTo) hash(chunk);
      else kick();
      pos += chunk.length;
    }
    if (pos !== r.end + 1) throw new Error(`range ${r.start}-${r.end} ended after ${pos - r.start} of ${r.end - r.start + 1} bytes`);
    kick();
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
    while (catchingUp !== undefined) await catchingUp;
    if (failure === undefined && hashedUpTo < o.size) await catchUp();
    if (failure !== undefined) throw failure;
    if (hashedUpTo !== o.size) throw new Error(`hashed ${hashedUpTo} of ${o.size} bytes`);
  } finally {
    await fd.close();
  }
  const [sha, md5] = hashes;
  return { sha256: sha!.digest("hex"), ...(md5 && { md5: md5.digest("hex") }) };
}

async function writeAll(fd: FileHandle, chunk: Buffer, position: number): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const { bytesWritten } = await fd.write(chunk, off, chunk.length - off, position + off);
    off += bytesWritten;
  }
}
