import { createHash } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { ModelCredentials } from "../../core/contracts/endpoint-env.ts";
import { modelUrlPolicy } from "../../core/engine/model-source-policy.ts";
import { guardedLookup, lookupWith, type ResolveAll } from "../../core/net/host-resolution.ts";
import { checkUrl, type AllowList } from "../../core/net/url-policy.ts";
import { FileModelSource } from "./file-model-source.ts";
import { HttpModelSource } from "./http-model-source.ts";
import { ModelSourceError, type ModelSource } from "./model-source.ts";
import { LazyS3ModelSource } from "./lazy-s3-model-source.ts";

export interface ModelSourcesOptions {
  /** HEARTH_MODEL_DIRS. */
  modelDirs: readonly string[];
  /** HEARTH_MODEL_ALLOWLIST. */
  allow: AllowList;
  /** The operator's S3 service (HEARTH_S3_ENDPOINT, HEARTH_S3_REGION). */
  s3: { endpoint?: string; region: string; forcePathStyle: boolean };
  /** HEARTH_MODEL_VERIFY_ETAG: check single-part ETags (MD5) of S3 models too. Default false. */
  verifyEtag?: boolean;
  /** The tenant's credentials for its own bucket (HEARTH_MODEL_CREDENTIALS), when the endpoint gives some. */
  tenantCredentials?: ModelCredentials;
  /** Resolver beneath the connect-time address checks. Default: the system's. */
  resolve?: ResolveAll;
}

/**
 * The worker's model sources, each held to the operator's policy at download: local files inside
 * HEARTH_MODEL_DIRS; http(s) to public addresses or allow-listed ones; S3 with the tenant's own
 * credentials (any bucket they open, at the tenant's endpoint, whose addresses are checked as the
 * socket connects) or else with the operator's (the SDK's chain: the scheduler gave this worker
 * them only for an allow-listed bucket), and then only in allow-listed buckets. Throws
 * MODEL_SOURCE_FORBIDDEN when the tenant's S3 endpoint itself is refused.
 */
export function createModelSources(options: ModelSourcesOptions): { sources: ModelSource[]; close(): void } {
  const policy = modelUrlPolicy(options.allow);
  const resolve = options.resolve === undefined ? {} : { resolve: options.resolve };
  const s3 = options.tenantCredentials === undefined ? operatorS3(options) : tenantS3(options.tenantCredentials, options, policy, options.resolve);
  return {
    sources: [new FileModelSource({ allowedDirs: options.modelDirs }), s3, new HttpModelSource({ policy, ...resolve })],
    close: () => s3.close(),
  };
}

function operatorS3(options: ModelSourcesOptions): LazyS3ModelSource {
  return new LazyS3ModelSource({ ...options.s3, buckets: [...options.allow.s3Buckets], verifyEtag: options.verifyEtag === true });
}

function tenantS3(c: ModelCredentials, options: ModelSourcesOptions, policy: ReturnType<typeof modelUrlPolicy>, resolve: ResolveAll | undefined): LazyS3ModelSource {
  const credentials = { accessKeyId: c.accessId, secretAccessKey: c.accessSecret };
  // Whose key reads decides what may be served from the cache: the same URI read with another key
  // (or none) is another entry. The secret is in the hash so that knowing an accessId is not enough.
  const cacheScope = `s3-key:${createHash("sha256").update(`${c.endpointUrl ?? ""}\n${c.accessId}\n${c.accessSecret}`).digest("hex").slice(0, 32)}`;
  const verifyEtag = options.verifyEtag === true;
  if (c.endpointUrl === undefined) return new LazyS3ModelSource({ ...options.s3, credentials, buckets: "any", cacheScope, verifyEtag });

  const endpoint = new URL(c.endpointUrl);
  const verdict = checkUrl(endpoint, policy);
  if (!verdict.ok) throw new ModelSourceError("MODEL_SOURCE_FORBIDDEN", `the endpoint's S3 service ${endpoint.origin}: ${verdict.reason}`);
  const lookup = verdict.resolve ? guardedLookup(policy, verdict.allowListedOnly, resolve) : resolve && lookupWith(resolve);
  return new LazyS3ModelSource({
    endpoint: c.endpointUrl,
    region: options.s3.region,
    forcePathStyle: true,
    credentials,
    buckets: "any",
    cacheScope,
    verifyEtag,
    ...(lookup && { requestHandler: { httpAgent: new http.Agent({ lookup }), httpsAgent: new https.Agent({ lookup }) } }),
  });
}
