import { S3Client } from "@aws-sdk/client-s3";
import { parseOutputBucket } from "./object-store-config.ts";
import type { S3ObjectStoreOptions } from "./s3-object-store.ts";

/**
 * HEARTH_ENGINE_CACHE_BUCKET (`s3://bucket/prefix`) on the AWS SDK's default credential chain,
 * path-style on HEARTH_S3_ENDPOINT when set. Checksums only where S3 requires them: with the SDK's
 * default, a presigned PUT carries the CRC32 of an empty body (`x-amz-checksum-crc32=AAAAAA==`),
 * which S3 compares with the bytes that are then uploaded and refuses.
 */
export function engineCacheBucket(url: string, s3: { endpoint?: string; region: string }): S3ObjectStoreOptions {
  const { bucket, prefix } = parseOutputBucket(url);
  const client = new S3Client({
    region: s3.region,
    ...(s3.endpoint !== undefined && { endpoint: s3.endpoint, forcePathStyle: true }),
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
  return { bucket, prefix, client };
}
