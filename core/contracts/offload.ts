import { z } from "zod";

/*
 * The offload protocol between a worker and the control plane's broker (apps/control/offload-broker.ts).
 * A worker never holds S3 credentials: it asks for presigned URLs for one job's objects, and the
 * broker, which reads the job and opens its sealed `s3Config` (or uses the platform bucket), answers
 * with URLs good for exactly those keys. Requests go on one list (`RedisKeys.offloadRequests`,
 * write-only for workers), answers on a list under the asking endpoint's prefix, which only that
 * endpoint's workers can read.
 */

/** The objects a job may write: its output, and its stream chunks by number. */
export const offloadObjectName = z.string().regex(/^(output|chunk-\d{1,9})\.json$/, "is not output.json or chunk-<n>.json");

const base = {
  /** Names the answer list; random per request. */
  id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  endpointId: z.string().min(1).max(128),
  jobId: z.string().min(1).max(128),
};

export const offloadRequest = z.discriminatedUnion("kind", [
  /** One presigned PUT for an object written whole. */
  z.object({ kind: z.literal("put"), ...base, name: offloadObjectName }),
  /** A multipart upload, for an object written as it is produced. */
  z.object({ kind: z.literal("multipart"), ...base, name: offloadObjectName }),
  /** More part URLs of a multipart upload begun with `multipart`. */
  z.object({
    kind: z.literal("parts"),
    ...base,
    name: offloadObjectName,
    uploadId: z.string().min(1).max(1024),
    from: z.number().int().min(1).max(10_000),
    count: z.number().int().min(1).max(100),
  }),
  /** A presigned GET of the job's `inputRef`. */
  z.object({ kind: z.literal("input"), ...base }),
]);
export type OffloadRequest = z.infer<typeof offloadRequest>;

/** Where an object lands and how its reader gets it: the job's `outputRef` without its size and hash. */
export const offloadTarget = z.object({
  bucket: z.string(),
  key: z.string(),
  /** Presigned GET. */
  url: z.url(),
  /** When `url` stops working (ISO 8601). */
  expiresAt: z.string(),
});
export type OffloadTarget = z.infer<typeof offloadTarget>;

const partUrl = z.object({ partNumber: z.number().int().min(1).max(10_000), url: z.url() });

export const putGrant = z.object({ putUrl: z.url(), target: offloadTarget });
export const multipartGrant = z.object({ uploadId: z.string(), partUrls: z.array(partUrl), completeUrl: z.url(), abortUrl: z.url(), target: offloadTarget });
export const partsGrant = z.object({ partUrls: z.array(partUrl) });
export const inputGrant = z.object({ url: z.url(), uri: z.string() });
export type PutGrant = z.infer<typeof putGrant>;
export type MultipartGrant = z.infer<typeof multipartGrant>;
export type PartsGrant = z.infer<typeof partsGrant>;
export type InputGrant = z.infer<typeof inputGrant>;

/** The broker's answer: a grant of the kind asked for, or why there is none (never a secret). */
export const offloadReply = z.union([z.object({ ok: z.literal(true), grant: z.unknown() }), z.object({ ok: z.literal(false), error: z.string() })]);
export type OffloadReply = z.infer<typeof offloadReply>;

/** What a job's `output` (or a stream chunk) becomes once its bytes are in a bucket. */
export const offloadedOutput = z.object({
  outputRef: offloadTarget.extend({
    bytes: z.number().int().min(0),
    /** Hex SHA-256 of the object's bytes (the JSON text of the value). */
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
  }),
});
export type OffloadedOutput = z.infer<typeof offloadedOutput>;

/** An input given as a reference: `{"inputRef": "s3://bucket/key"}`, fetched and parsed as JSON before the handler runs. */
export const inputReference = z.strictObject({ inputRef: z.string().regex(/^s3:\/\/[^/]+\/.+$/, "must be s3://bucket/key") });
