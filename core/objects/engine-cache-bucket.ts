import { operatorBucket } from "./object-store-config.ts";
import type { S3ObjectStoreOptions } from "./s3-object-store.ts";

/** HEARTH_ENGINE_CACHE_BUCKET (`s3://bucket/prefix`), as the platform's other buckets are opened (`operatorBucket`). */
export function engineCacheBucket(url: string, s3: { endpoint?: string; region: string }): S3ObjectStoreOptions {
  return operatorBucket(url, s3);
}
