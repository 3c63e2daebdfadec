/** One byte range of an object, both ends inclusive (as an HTTP `Range: bytes=start-end` header says). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * Splits an object of `size` bytes into consecutive ranges of `partBytes` (the last one shorter),
 * for parallel ranged GETs. An empty object has no ranges (it is fetched with one plain GET).
 */
export function planRanges(size: number, partBytes: number): ByteRange[] {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`size must be a non-negative integer, got ${size}`);
  if (!Number.isSafeInteger(partBytes) || partBytes < 1) throw new RangeError(`partBytes must be a positive integer, got ${partBytes}`);
  const ranges: ByteRange[] = [];
  for (let start = 0; start < size; start += partBytes) ranges.push({ start, end: Math.min(start + partBytes, size) - 1 });
  return ranges;
}

/** The `Range` header value for a range. */
export function rangeHeader(r: ByteRange): string {
  return `bytes=${r.start}-${r.end}`;
}

/**
 * The total length from a `Content-Range: bytes 0-99/1234` header, or undefined when it is absent,
 * malformed or says the length is unknown (`*`).
 */
export function totalFromContentRange(header: string | undefined): number | undefined {
  const m = header === undefined ? null : /^bytes (\d+)-(\d+)\/(\d+)$/.exec(header.trim());
  if (m === null) return undefined;
  const total = Number(m[3]);
  return Number.isSafeInteger(total) ? total : undefined;
}
