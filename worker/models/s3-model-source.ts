import { mkdir } from "node:fs/promises";
import { dirname, join, posix, resolve, sep } from "node:path";
import { Readable } from "node:stream";
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { AddressRefusedError } from "../../core/net/host-resolution.ts";
import { etagMd5, s3ChecksumToHex } from "../../core/weights/model-digest.ts";
import { rangeHeader } from "../../core/weights/range-plan.ts";
import { ModelSourceError, type DownloadHooks, type MaterialisedModel, type ModelSource } from "./model-source.ts";
import { rangedDownload } from "./ranged-download.ts";

export interface S3ModelSourceOptions {
  /**
   * Buckets this source may read; any other is refused (MODEL_SOURCE_FORBIDDEN) before a request is
   * made. The operator's credentials get the allow-listed buckets only; `"any"` is for a source
   * holding a tenant's own credentials, which can read only what the tenant's key can.
   */
  buckets: readonly string[] | "any";
  /** See ModelSource.cacheScope: set for a source holding a tenant's credentials. */
  cacheScope?: string;
  /** The client's HTTP handler settings (e.g. agents whose `lookup` checks a tenant's endpoint's addresses). */
  requestHandler?: S3ClientConfig["requestHandler"];
  /** A ready client; when given, the connection options below are ignored. */
  client?: S3Client;
  /** S3-compatible endpoint (MinIO, R2, …). Default: AWS, by region. */
  endpoint?: string;
  /** Default: the SDK's chain (AWS_REGION, shared config). */
  region?: string;
  /** `endpoint/bucket/key` instead of `bucket.endpoint/key`; most S3-compatible servers want it. Default false. */
  forcePathStyle?: boolean;
  /** Default: the SDK's credential chain (env, shared files, container and instance roles). */
  credentials?: S3ClientConfig["credentials"];
  /** Objects of a prefix downloaded at once. Default 4. */
  concurrency?: number;
  /** Keys per ListObjectsV2 page. Default: the server's (1000 on S3). */
  listPageSize?: number;
  /** Bytes per ranged GET of one object. Default 8 MiB. */
  partBytes?: number;
  /** Ranged GETs of one object in flight at once. Default 8. */
  rangeConcurrency?: number;
  /**
   * HEARTH_MODEL_VERIFY_ETAG: also check a single-part ETag (the body's MD5) when the object
   * publishes no ChecksumSHA256. MD5 runs on a thread of its own as the bytes arrive, but at about
   * 100 MiB/s per core here it halved a 256 MiB pull (bench `weights-pull`), so it is opt-in; the
   * sha256 every download gets, and any ChecksumSHA256 or `#sha256=` check, stay on. Default false.
   */
  verifyEtag?: boolean;
}

/**
 * `s3://bucket/key`. A key naming one object downloads to a file; a key ending in `/`, or one that is
 * not an object but prefixes some, downloads every object below it into a directory, keeping their
 * relative paths (a Hugging Face checkpoint: config, tokenizer, weight shards). Each object is read
 * as parallel ranged GETs (pinned to the ETag a HEAD saw, so a replaced object cannot be stitched
 * from two versions), hashed as it arrives, and checked against the ChecksumSHA256 S3 publishes
 * (or, with `verifyEtag`, a single-part ETag's MD5): a short range or a mismatch fails the download.
 */
export class S3ModelSource implements ModelSource {
  readonly schemes = ["s3:"] as const;
  readonly cacheScope: string | undefined;
  private readonly client: S3Client;

  constructor(private readonly options: S3ModelSourceOptions) {
    this.cacheScope = options.cacheScope;
    this.client =
      options.client ??
      new S3Client({
        ...(options.endpoint !== undefined && { endpoint: options.endpoint }),
        ...(options.region !== undefined && { region: options.region }),
        ...(options.forcePathStyle !== undefined && { forcePathStyle: options.forcePathStyle }),
        ...(options.credentials !== undefined && { credentials: options.credentials }),
        ...(options.requestHandler !== undefined && { requestHandler: options.requestHandler }),
      });
  }

  async authorize(uri: URL): Promise<void> {
    const { buckets } = this.options;
    if (buckets === "any" || buckets.includes(uri.hostname)) return;
    throw new ModelSourceError("MODEL_SOURCE_FORBIDDEN", `s3://${uri.hostname} is not a bucket HEARTH_MODEL_ALLOWLIST lists, and the endpoint gives no credentials of its own`);
  }

  /** Closes the connections of a client this source created; a client passed in belongs to the caller. */
  close(): void {
    if (this.options.client === undefined) this.client.destroy();
  }

  async materialise(uri: URL, destDir: string, signal?: AbortSignal, hooks?: DownloadHooks): Promise<string | MaterialisedModel> {
    const bucket = uri.hostname;
    const key = decodeURIComponent(uri.pathname.replace(/^\//, ""));
    if (bucket === "") throw new ModelSourceError("MODEL_URI_INVALID", `${uri.href} names no bucket`);
    await this.authorize(uri);

    if (key !== "" && !key.endsWith("/")) {
      const file = join(destDir, posix.basename(key));
      await mkdir(destDir, { recursive: true });
      try {
        return { path: file, sha256: await this.download(bucket, key, file, signal, hooks) };
      } catch (err) {
        // Not an object: maybe a "directory" written without its trailing slash.
        if (!isNotFound(err)) throw mapError(err, bucket, key);
      }
    }
    const prefix = key === "" || key.endsWith("/") ? key : `${key}/`;
    const root = join(destDir, posix.basename(prefix) || bucket);
    const objects = await this.list(bucket, prefix, signal);
    if (objects.length === 0) throw new ModelSourceError("MODEL_NOT_FOUND", `s3://${bucket}/${key} is neither an object nor a prefix of any`);
    for (const { key: objectKey } of objects) {
      const target = resolve(root, objectKey.slice(prefix.length));
      // A key like `a/../../x` must not write outside the model directory.
      if (!target.startsWith(root + sep)) throw new ModelSourceError("MODEL_FETCH_FAILED", `s3://${bucket}/${objectKey} would be written outside the model directory`);
    }
    // The first failure stops the other downloads, and all of them settle before this rejects: the
    // store removes the partial directory next, and nothing may write into it after that.
    await hooks?.expectBytes?.(objects.reduce((n, o) => n + (o.size ?? 0), 0));
    const fileHooks = hooks?.onBytes ? { onBytes: hooks.onBytes } : undefined;
    const stop = new AbortController();
    const lanesSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    let failure: ModelSourceError | undefined;
    await runLimited(objects, this.options.concurrency ?? 4, async ({ key: objectKey, size }) => {
      if (failure !== undefined) return;
      const target = resolve(root, objectKey.slice(prefix.length));
      try {
        await mkdir(dirname(target), { recursive: true });
        await this.download(bucket, objectKey, target, lanesSignal, fileHooks, size);
      } catch (err) {
        failure ??= mapError(err, bucket, objectKey);
        stop.abort();
      }
    });
    if (failure !== undefined) throw failure;
    return root;
  }

  /** Downloads one object to `file` and returns its sha256 (checked against what S3 publishes). */
  private async download(bucket: string, key: string, file: string, signal: AbortSignal | undefined, hooks: DownloadHooks | undefined, listedSize?: number): Promise<string> {
    const head = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: "ENABLED" }), { abortSignal: signal });
    const size = head.ContentLength ?? listedSize;
    if (size === undefined) throw new Error("HeadObject reported no length");
    await hooks?.expectBytes?.(size);
    const published = s3ChecksumToHex(head.ChecksumSHA256);
    const md5 = published === undefined && this.options.verifyEtag === true ? etagMd5(head.ETag) : undefined;
    const etag = head.ETag;
    const got = await rangedDownload({
      size,
      partBytes: this.options.partBytes ?? 8 * 1024 * 1024,
      concurrency: this.options.rangeConcurrency ?? 8,
      file,
      md5: md5 !== undefined,
      ...(signal && { signal }),
      ...(hooks?.onBytes && { onBytes: hooks.onBytes }),
      fetchRange: async (range, rangeSignal) => {
        const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: rangeHeader(range), ...(etag !== undefined && { IfMatch: etag }) }), { abortSignal: rangeSignal });
        if (!(res.Body instanceof Readable)) throw new Error("GetObject returned no readable body");
        return res.Body;
      },
    });
    const where = `s3://${bucket}/${key}`;
    if (published !== undefined && got.sha256 !== published) throw new ModelSourceError("MODEL_CHECKSUM_MISMATCH", `${where} has sha256 ${got.sha256}, S3 published ${published}`);
    if (md5 !== undefined && got.md5 !== md5) throw new ModelSourceError("MODEL_CHECKSUM_MISMATCH", `${where} has MD5 ${got.md5}, its ETag says ${md5}`);
    return got.sha256;
  }

  private async list(bucket: string, prefix: string, signal: AbortSignal | undefined): Promise<{ key: string; size: number | undefined }[]> {
    const objects: { key: string; size: number | undefined }[] = [];
    let token: string | undefined;
    do {
      const page = await this.client
        .send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: this.options.listPageSize }),
          { abortSignal: signal },
        )
        .catch((err: unknown) => {
          throw mapError(err, bucket, prefix);
        });
      for (const o of page.Contents ?? []) {
        // Keys ending in "/" are folder markers some consoles create, not files.
        if (o.Key !== undefined && !o.Key.endsWith("/")) objects.push({ key: o.Key, size: o.Size });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return objects;
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === "NoSuchKey" || e.name === "NotFound" || e.$metadata?.httpStatusCode === 404;
}

function mapError(err: unknown, bucket: string, key: string): ModelSourceError {
  if (err instanceof ModelSourceError) return err;
  const e = err as { name?: string; message?: string };
  const where = `s3://${bucket}/${key}`;
  if (err instanceof AddressRefusedError) return new ModelSourceError("MODEL_SOURCE_FORBIDDEN", `fetching ${where} refused: ${err.message}`, { cause: err });
  if (e.name === "NoSuchBucket") return new ModelSourceError("MODEL_NOT_FOUND", `bucket ${bucket} does not exist`, { cause: err });
  if (isNotFound(err)) return new ModelSourceError("MODEL_NOT_FOUND", `${where} does not exist`, { cause: err });
  return new ModelSourceError("MODEL_FETCH_FAILED", `fetching ${where} failed: ${e.name ?? "Error"}: ${e.message ?? String(err)}`, { cause: err });
}

/** Runs `fn` over `items` with at most `limit` at once. */
async function runLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) await fn(items[next++] as T);
  });
  await Promise.all(lanes);
}
