import { z } from "zod";
import { depthMessage, withinDepth } from "./safe-text.ts";

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

export const s3Config = z
  .object({
    accessId: z.string(),
    accessSecret: z.string(),
    bucketName: z.string(),
    endpointUrl: z.string(),
    objectPath: z.string().optional(),
  })
  .optional();

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
