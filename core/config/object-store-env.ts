import { fileURLToPath } from "node:url";
import { isAbsolute } from "node:path";
import { z } from "zod";
import { parseOutputBucket, type ObjectStoreConfig } from "../objects/output-bucket.ts";
import { intFrom, optionalString } from "./parse-env.ts";

/** Where the local object store keeps large outputs by default: beside the demo model, in the checkout. */
export const defaultObjectDir = fileURLToPath(new URL("../../.hearth/objects", import.meta.url));

/** HEARTH_OFFLOAD_BYTES' default: 1 MB. */
export const DEFAULT_OFFLOAD_BYTES = 1_048_576;

/**
 * Where job outputs too large for Postgres go, read by the control plane (which writes them) and the
 * API (which serves them): HEARTH_OUTPUT_BUCKET (`s3://bucket/prefix`, on HEARTH_S3_ENDPOINT /
 * HEARTH_S3_REGION and the AWS SDK's credential chain) or else the directory HEARTH_OBJECT_DIR,
 * which both must see (one host, or a shared volume).
 */
/** `s3://bucket` or `s3://bucket/prefix` (see parseOutputBucket); unset or empty: undefined. */
export const s3BucketUrl = optionalString.pipe(
  z
    .string()
    .refine((s) => {
      try {
        parseOutputBucket(s);
        return true;
      } catch {
        return false;
      }
    }, "must be s3://bucket or s3://bucket/prefix")
    .optional(),
);

export const objectStoreEnv = {
  HEARTH_OBJECT_DIR: z.preprocess((v) => (v === "" || v === undefined ? defaultObjectDir : v), z.string().refine(isAbsolute, "must be an absolute path")),
  HEARTH_OUTPUT_BUCKET: s3BucketUrl,
  HEARTH_S3_ENDPOINT: optionalString.pipe(z.url().optional()),
  HEARTH_S3_REGION: z.preprocess((v) => (v === "" || v === undefined ? "us-east-1" : v), z.string()),
  /** Outputs and stream chunks whose JSON is longer go to the job's bucket (s3Config, else HEARTH_OUTPUT_BUCKET) when there is one. */
  HEARTH_OFFLOAD_BYTES: intFrom(DEFAULT_OFFLOAD_BYTES, 1024, 512 * 1_048_576),
};

/** The object store's settings (core/objects) and the offload threshold the API writes into jobs. */
export interface ObjectStoreSettings extends ObjectStoreConfig {
  /** HEARTH_OFFLOAD_BYTES. */
  offloadBytes: number;
}

export function objectStoreSettings(c: { HEARTH_OBJECT_DIR: string; HEARTH_OUTPUT_BUCKET?: string | undefined; HEARTH_S3_ENDPOINT?: string | undefined; HEARTH_S3_REGION: string; HEARTH_OFFLOAD_BYTES: number }): ObjectStoreSettings {
  return {
    objectDir: c.HEARTH_OBJECT_DIR,
    ...(c.HEARTH_OUTPUT_BUCKET !== undefined && { outputBucket: c.HEARTH_OUTPUT_BUCKET }),
    ...(c.HEARTH_S3_ENDPOINT !== undefined && { s3Endpoint: c.HEARTH_S3_ENDPOINT }),
    s3Region: c.HEARTH_S3_REGION,
    offloadBytes: c.HEARTH_OFFLOAD_BYTES,
  };
}
