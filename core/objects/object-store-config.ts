import { S3Client } from "@aws-sdk/client-s3";
import { ConfigError } from "../config/parse-env.ts";
import { LocalObjectStore } from "./local-object-store.ts";
import type { ObjectStore } from "./object-store.ts";
import { S3ObjectStore, type S3ObjectStoreOptions } from "./s3-object-store.ts";
import { KEY_SEGMENT, S3_BUCKET_NAME } from "./s3-names.ts";

const BUCKET = S3_BUCKET_NAME;
const PREFIX_SEGMENT = KEY_SEGMENT;

/**
 * `s3://bucket` or `s3://bucket/some/prefix` (HEARTH_OUTPUT_BUCKET) → the bucket and a prefix that is
 * empty or ends with `/`. The prefix follows the object-key rule (`[A-Za-z0-9._-]` segments, none
 * empty, `.` or `..`). Throws ConfigError on anything else.
 */
export function parseOutputBucket(text: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(text);
  const bucket = m?.[1] ?? "";
  if (m === null || !BUCKET.test(bucket)) throw new ConfigError(`${JSON.stringify(text)} is not s3://bucket or s3://bucket/prefix with a valid S3 bucket name`);
  const raw = m[2] ?? "";
  if (raw === "") return { bucket, prefix: "" };
  const path = raw.endsWith("/") ? raw.slice(0, -1) : raw;
  for (const segment of path.split("/")) {
    if (!PREFIX_SEGMENT.test(segment) || segment === "." || segment === "..") {
      throw new ConfigError(`the prefix of ${JSON.stringify(text)} must be [A-Za-z0-9._-] segments joined by "/" (no empty, "." or ".." segment)`);
    }
  }
  return { bucket, prefix: `${path}/` };
}

export interface ObjectStoreConfig {
  /** Directory of the local store, used when `outputBucket` is unset. */
  objectDir: string;
  /** HEARTH_OUTPUT_BUCKET, `s3://bucket/prefix`; selects the S3 store. */
  outputBucket?: string;
  /** HEARTH_S3_ENDPOINT: an S3-compatible service (MinIO, R2, …), addressed path-style. Default: AWS, by region. */
  s3Endpoint?: string;
  /** HEARTH_S3_REGION. */
  s3Region: string;
}

/**
 * A bucket (`s3://bucket/prefix`) on the AWS SDK's default credential chain (env, shared files,
 * container and instance roles), path-style on HEARTH_S3_ENDPOINT when set. Checksums only where S3
 * requires them: with the SDK's default, a presigned PUT carries the CRC32 of an empty body
 * (`x-amz-checksum-crc32=AAAAAA==`), which S3 compares with the bytes then uploaded and refuses.
 */
export function operatorBucket(url: string, s3: { endpoint?: string; region: string }): S3ObjectStoreOptions {
  const { bucket, prefix } = parseOutputBucket(url);
  const client = new S3Client({
    region: s3.region,
    ...(s3.endpoint !== undefined && { endpoint: s3.endpoint, forcePathStyle: true }),
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  return { bucket, prefix, client };
}

/** HEARTH_OUTPUT_BUCKET (see `operatorBucket`); undefined without a bucket. */
export function platformBucket(opts: ObjectStoreConfig): S3ObjectStoreOptions | undefined {
  if (opts.outputBucket === undefined) return undefined;
  return operatorBucket(opts.outputBucket, { ...(opts.s3Endpoint !== undefined && { endpoint: opts.s3Endpoint }), region: opts.s3Region });
}

/** The control plane's object store: the platform bucket when one is configured, else a local directory. */
export function createObjectStore(opts: ObjectStoreConfig, platform = platformBucket(opts)): ObjectStore {
  return platform === undefined ? new LocalObjectStore(opts.objectDir) : new S3ObjectStore(platform);
}
