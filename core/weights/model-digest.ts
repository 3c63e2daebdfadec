/** A sha256 digest as the weights cache names entries: 64 lowercase hex digits. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * The digest a model URI pins with a `#sha256=<64 hex>` fragment (the tenant's own statement of
 * what the bytes must be), undefined when there is none, and an Error when the fragment names
 * sha256 with something that is not a digest: a typo must not turn verification off silently.
 */
export function fragmentSha256(uri: URL): string | undefined | Error {
  const params = new URLSearchParams(uri.hash.replace(/^#/, ""));
  const value = params.get("sha256");
  if (value === null) return undefined;
  const hex = value.toLowerCase();
  return SHA256_HEX.test(hex) ? hex : new Error(`#sha256= must be 64 hex digits, got ${JSON.stringify(value.slice(0, 80))}`);
}

/** S3's `ChecksumSHA256` (base64 of the raw digest) as hex; undefined for a composite (multipart, `-N` suffixed) or malformed one. */
export function s3ChecksumToHex(checksum: string | undefined): string | undefined {
  if (checksum === undefined || checksum.includes("-")) return undefined;
  const raw = Buffer.from(checksum, "base64");
  return raw.length === 32 ? raw.toString("hex") : undefined;
}

/** An S3 ETag that is the MD5 of the body (single-part upload without SSE-KMS): 32 hex digits, no `-N` part count. */
export function etagMd5(etag: string | undefined): string | undefined {
  const v = etag?.replace(/^W\//, "").replace(/"/g, "").toLowerCase();
  return v !== undefined && /^[0-9a-f]{32}$/.test(v) ? v : undefined;
}

/**
 * The digest of a directory model: sha256 over its files' relative paths and digests, sorted by
 * path, so the same checkpoint downloaded twice (in any order) gets the same name.
 */
export function directoryDigest(files: ReadonlyArray<{ path: string; sha256: string }>, hash: (text: string) => string): string {
  const lines = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)).map((f) => `${f.sha256}  ${f.path}\n`);
  return hash(`hearth-dir-v1\n${lines.join("")}`);
}
