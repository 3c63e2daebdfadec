import { createWriteStream } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import { dirname, join, posix, resolve, sep } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { GetObjectCommand, ListObjectsV2Command, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { AddressRefusedError } from "../../core/net/host-resolution.ts";
import { ModelSourceError, type ModelSource } from "./model-source.ts";

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
}

/**
 * `s3://bucket/key`. A key naming one object downloads to a file; a key ending in `/`, or one that is
 * not an object but prefixes some, downloads every object below it into a directory, keeping their
 * relative paths (a Hugging Face checkpoint: config, tokenizer, weight shards). Bodies are streamed
 * to disk and their sizes checked against what S3 reported, so a cut connection fails the download
 * instead of leaving a short shard.
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

  async materialise(uri: URL, destDir: string, signal?: AbortSignal): Promise<string> {
    const bucket = uri.hostname;
    const key = decodeURIComponent(uri.pathname.replace(/^\//, ""));
    if (bucket === "") throw new ModelSourceError("MODEL_URI_INVALID", `${uri.href} names no bucket`);
    await this.authorize(uri);

    if (key !== "" && !key.endsWith("/")) {
      const file = join(destDir, posix.basename(key));
      await mkdir(destDir, { recursive: true });
      try {
        await this.download(bucket, key, file, signal);
        return file;
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
    const stop = new AbortController();
    const lanesSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    let failure: ModelSourceError | undefined;
    await runLimited(objects, this.options.concurrency ?? 4, async ({ key: objectKey, size }) => {
      if (failure !== undefined) return;
      const target = resolve(root, objectKey.slice(prefix.length));
      try {
        await mkdir(dirname(target), { recursive: true });
        await this.download(bucket, objectKey, target, lanesSignal, size);
      } catch (err) {
        failure ??= mapError(err, bucket, objectKey);
        stop.abort();
      }
    });
    if (failure !== undefined) throw failure;
    return root;
  }

  private async download(bucket: string, key: string, file: string, signal: AbortSignal | undefined, listedSize?: number): Promise<void> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: signal });
    if (!(res.Body instanceof Readable)) throw new Error("GetObject returned no readable body");
    await pipeline(res.Body, createWriteStream(file), signal ? { signal } : {});
    const expected = res.ContentLength ?? listedSize;
    const written = (await stat(file)).size;
    if (expected !== undefined && written !== expected) throw new Error(`wrote ${written} of ${expected} bytes`);
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
