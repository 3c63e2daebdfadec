import { S3Client } from "@aws-sdk/client-s3";
import { LocalObjectStore } from "./local-object-store.ts";
import type { ObjectStore } from "./object-store.ts";
import { S3ObjectStore, type S3ObjectStoreOptions } from "./s3-object-store.ts";
import { parseOutputBucket, type ObjectStoreConfig } from "./output-bucket.ts";

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
