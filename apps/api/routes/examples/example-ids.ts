/*
 * The ids and instants every example in the OpenAPI document shares, in the shapes Hearth issues
 * them (core/ids/random-id.ts): one tenant, one endpoint, its jobs and workers, so that examples
 * read as one story and an id in one answer is the id another route takes.
 */

export const TENANT_ID = "tn_8f3kq2m7x9wd";
export const KEY_ID = "key_r4n8c2v6b1ts";
/** `hk_` and 24 random bytes in base64url; `prefix` is its first 10 characters. */
export const API_KEY = "hk_CZDM_NW96ig9ec0-o3f3QTITy8jhjdkr";
export const ADMIN_KEY_ID = "adk_h2v7n4c9q1xe";
export const ADMIN_KEY = "hak_iUAf9FfQnu31Uu_nlIUGZaKeqiRTfpL0";
/** RunPod's endpoint id shape: 14 lower-case alphanumerics. */
export const ENDPOINT_ID = "q7k2m9x4w1zr8b";
/** Async job ids are `<uuid>-u1`, sync ones (`/runsync`, the OpenAI routes) `sync-<uuid>-u1`. */
export const JOB_ID = "5f0c2b7e-8d4a-4c1e-9b36-7a2e1d9c4f80-u1";
export const SYNC_JOB_ID = "sync-528df54e-6b2c-4241-9eff-7a11e84ab72b-u1";
export const WORKER_ID = "w-m3x8k1q9z2pv";
/** W3C trace id of the request that submitted `JOB_ID`. */
export const TRACE_ID = "532f7a0a4b93115f6a9a6d837d343467";
/** Standard Webhooks signing secrets: `whsec_` and 24 random bytes in base64. */
export const WEBHOOK_SECRET = "whsec_LA465zB8qNnKirZpepedkNPLnztSK4ai";
export const GPU_TYPE = "NVIDIA L4";
export const MODEL_NAME = "qwen2.5-7b-instruct";

/** When the endpoint was created and last changed, and when `JOB_ID` went through it. */
export const AT = {
  endpointCreated: "2025-06-02T09:14:27.512Z",
  endpointUpdated: "2025-06-03T16:40:02.907Z",
  workerRequested: "2025-06-04T14:20:31.044Z",
  workerReady: "2025-06-04T14:21:12.380Z",
  jobSubmitted: "2025-06-04T14:22:05.118Z",
  jobStarted: "2025-06-04T14:22:05.942Z",
  jobFinished: "2025-06-04T14:22:07.379Z",
  workerEnded: "2025-06-04T14:30:42.118Z",
} as const;
