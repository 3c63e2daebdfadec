import { z } from "zod";
import { depthMessage, safeText, withinDepth } from "./safe-text.ts";
import { S3_BUCKET_NAME, isKeyPath } from "../objects/s3-names.ts";

const DAY_MS = 24 * 3600 * 1000;

/** Per-job policy; every field optional, bounds from RunPod's docs. */
export const jobPolicy = z
  .object({
    /** ms the job may run; overrides the endpoint's executionTimeoutMs. 5 s – 7 days. */
    executionTimeout: z.number().int().min(5000).max(7 * DAY_MS).optional(),
    /** A low-priority job never makes the scheduler add a worker. */
    lowPriority: z.boolean().optional(),
    /** ms from submission after which the job is deleted whatever its state. 10 s – 7 days, default 24 h. */
    ttl: z.number().int().min(10_000).max(7 * DAY_MS).optional(),
  })
  .optional();

/**
 * RunPod's per-request bucket for large outputs (and `inputRef` inputs). Held sealed with
 * HEARTH_SECRETS_KEY for the job's life and opened only by the control plane, which hands workers
 * presigned URLs (core/contracts/offload.ts).
 */
export const s3ConfigValue = z.object({
  accessId: safeText(256),
  accessSecret: safeText(1024),
  bucketName: z.string().regex(S3_BUCKET_NAME, "is not a valid S3 bucket name"),
  /** The S3 API endpoint, addressed path-style (https://s3.us-east-1.amazonaws.com, a MinIO or R2 URL). */
  endpointUrl: z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).max(2048),
  /** Keys are `<objectPath>/<job id>/<name>`: `[A-Za-z0-9._-]` segments joined by `/`. */
  objectPath: z
    .string()
    .max(512)
    .refine((s) => trimSlashes(s) === "" || isKeyPath(trimSlashes(s)), "must be [A-Za-z0-9._-] segments joined by /")
    .optional(),
});
/** `objectPath` without leading or trailing slashes (RunPod's examples write both forms). */
export function trimSlashes(s: string): string {
  return s.replace(/^\/+|\/+$/g, "");
}

export type S3ConfigValue = z.infer<typeof s3ConfigValue>;
export const s3Config = s3ConfigValue.optional();

const webhookUrl = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional();

/**
 * Body of `/run` and `/runsync`. Unknown top-level keys are tolerated (RunPod's own docs send
 * `timeout` in the body by mistake), so the object is not strict.
 */
export const runRequest = z.object({
  input: z
    .unknown()
    .refine((v) => v !== undefined, "input is required")
    .refine(withinDepth, depthMessage),
  webhook: webhookUrl,
  webhookV2: webhookUrl,
  policy: jobPolicy,
  s3Config,
});
export type RunRequest = z.infer<typeof runRequest>;

export const DEFAULT_TTL_MS = DAY_MS;
