import { fileURLToPath } from "node:url";
import { isAbsolute } from "node:path";
import { z } from "zod";
import { parseOutputBucket } from "../objects/object-store-config.ts";
import { optionalString } from "./parse-env.ts";

/** Where the local object store keeps large outputs by default: beside the demo model, in the checkout. */
export const defaultObjectDir = fileURLToPath(new URL("../../.hearth/objects", import.meta.url));

/**
 * Where job outputs too large for Postgres go, read by the control plane (which writes them) and the
 * API (which serves them): HEARTH_OUTPUT_BUCKET (`s3://bucket/prefix`, on HEARTH_S3_ENDPOINT /
 * HEARTH_S3_REGION and the AWS SDK's credential chain) or else the directory HEARTH_OBJECT_DIR,
 * which both must see (one host, or a shared volume).
 */
export const objectStoreEnv = {
  HEARTH_OBJECT_DIR: z.preprocess((v) => (v === "" || v === undefined ? defaultObjectDir : v), z.string().refine(isAbsolute, "must be an absolute path")),
  HEARTH_OUTPUT_BUCKET: optionalString.pipe(
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
  ),
  HEARTH_S3_ENDPOINT: optionalString.pipe(z.url().optional()),
  HEARTH_S3_REGION: z.preprocess((v) => (v === "" || v === undefined ? "us-east-1" : v), z.string()),
};

export interface ObjectStoreSettings {
  objectDir: string;
  outputBucket?: string;
  s3Endpoint?: string;
  s3Region: string;
}

export function objectStoreSettings(c: { HEARTH_OBJECT_DIR: string; HEARTH_OUTPUT_BUCKET?: string | undefined; HEARTH_S3_ENDPOINT?: string | undefined; HEARTH_S3_REGION: string }): ObjectStoreSettings {
  return {
    objectDir: c.HEARTH_OBJECT_DIR,
    ...(c.HEARTH_OUTPUT_BUCKET !== undefined && { outputBucket: c.HEARTH_OUTPUT_BUCKET }),
    ...(c.HEARTH_S3_ENDPOINT !== undefined && { s3Endpoint: c.HEARTH_S3_ENDPOINT }),
    s3Region: c.HEARTH_S3_REGION,
  };
}
