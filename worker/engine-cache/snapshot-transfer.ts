import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import http from "node:http";
import https from "node:https";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

/** The snapshot's bytes are not the ones its manifest names (length or sha256). */
export class SnapshotDamaged extends Error {
  readonly code = "ENGINE_CACHE_DAMAGED";
}

/** A connection quiet this long is given up (ms): a transfer of gigabytes is fine, a stalled one is not. */
const IDLE_TIMEOUT_MS = 60_000;

/**
 * Downloads a presigned GET into `file` (created 0600), checking the length as it comes and the
 * sha256 at the end against what the manifest says: nothing unverified is ever extracted. Throws
 * SnapshotDamaged on a mismatch, Error on any other failure.
 */
export async function downloadSnapshot(url: string, file: string, expected: { bytes: number; sha256: string }, signal?: AbortSignal): Promise<void> {
  const res = await request("GET", url, undefined, signal);
  if (res.statusCode !== 200) {
    res.resume();
    // A manifest without its archive (deleted apart, by hand or by a lifecycle rule) is replaced like a damaged one.
    if (res.statusCode === 404) throw new SnapshotDamaged("the manifest names an archive that is not there");
    throw new Error(`the snapshot GET answered ${res.statusCode}`);
  }
  const declared = res.headers["content-length"];
  if (declared !== undefined && Number(declared) !== expected.bytes) {
    res.destroy();
    throw new SnapshotDamaged(`the snapshot is ${declared} bytes; its manifest says ${expected.bytes}`);
  }
  const hash = createHash("sha256");
  let bytes = 0;
  const checked = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > expected.bytes) return done(new SnapshotDamaged(`the snapshot is longer than the ${expected.bytes} bytes its manifest says`));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  await pipeline(res, checked, createWriteStream(file, { flags: "wx", mode: 0o600 }), { ...(signal && { signal }) });
  if (bytes !== expected.bytes) throw new SnapshotDamaged(`the snapshot is ${bytes} bytes; its manifest says ${expected.bytes}`);
  const sha256 = hash.digest("hex");
  if (sha256 !== expected.sha256) throw new SnapshotDamaged(`the snapshot's sha256 is ${sha256}; its manifest says ${expected.sha256}`);
}

/** PUTs `bytes` bytes of `file` to a presigned URL whose length is signed. */
export async function uploadSnapshot(url: string, file: string, bytes: number, signal?: AbortSignal): Promise<void> {
  const res = await request("PUT", url, { headers: { "content-length": String(bytes) }, body: () => createReadStream(file) }, signal);
  await expectOk(res, "the snapshot PUT");
}

/** PUTs a small JSON body (the manifest). */
export async function putJson(url: string, value: unknown, signal?: AbortSignal): Promise<void> {
  const body = Buffer.from(JSON.stringify(value));
  const res = await request("PUT", url, { headers: { "content-type": "application/json", "content-length": String(body.length) }, body: () => body }, signal);
  await expectOk(res, "the manifest PUT");
}

async function expectOk(res: http.IncomingMessage, what: string): Promise<void> {
  let text = "";
  for await (const chunk of res) if (text.length < 500) text += (chunk as Buffer).toString("utf8");
  if (res.statusCode !== 200) throw new Error(`${what} answered ${res.statusCode}: ${text.slice(0, 200)}`);
}

function request(method: "GET" | "PUT", url: string, send: { headers: Record<string, string>; body: () => NodeJS.ReadableStream | Buffer } | undefined, signal?: AbortSignal): Promise<http.IncomingMessage> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    // No redirects: a presigned URL is answered where it points.
    const req = (target.protocol === "https:" ? https : http).request(target, { method, headers: send?.headers ?? {}, timeout: IDLE_TIMEOUT_MS, ...(signal && { signal }) });
    req.on("timeout", () => req.destroy(new Error(`no progress for ${IDLE_TIMEOUT_MS} ms`)));
    req.on("error", reject);
    req.on("response", resolve);
    if (send === undefined) return void req.end();
    const body = send.body();
    if (Buffer.isBuffer(body)) return void req.end(body);
    pipeline(body, req).catch((err: unknown) => req.destroy(err as Error));
  });
}
