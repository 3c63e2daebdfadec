import { ConfigError } from "../config/parse-env.ts";
import { KEY_SEGMENT, S3_BUCKET_NAME } from "./s3-names.ts";

// Apart from object-store-config.ts so that reading the configuration loads no S3 SDK: a worker
// reads it first thing on a cold start, and the SDK (1.4 MB) cost it about 70 ms before its engine could spawn.

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
