import { isInside, realAncestor } from "../fs/real-paths.ts";
import { realpath } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";
import { checkUrlAtSubmission, type ResolveAll } from "../net/host-resolution.ts";
import type { AllowList, UrlPolicy } from "../net/url-policy.ts";

/**
 * Which models a tenant may name: `https://` anywhere public (plain `http://` and private addresses
 * only where HEARTH_MODEL_ALLOWLIST says), `file://` and absolute paths only inside
 * HEARTH_MODEL_DIRS, `s3://` only with the tenant's own credentials or in an allow-listed bucket
 * (which the operator's credentials then read). The API checks at submission; the worker's model
 * sources check again at download (worker/models/*), on what they actually open and connect to.
 */
export interface ModelSourcePolicy {
  /** HEARTH_MODEL_DIRS. */
  modelDirs: readonly string[];
  /** HEARTH_MODEL_ALLOWLIST. */
  allow: AllowList;
  /** Resolver for the submission check. Default: the system's. */
  resolve?: ResolveAll;
}

export const MODEL_ALLOWLIST_VAR = "HEARTH_MODEL_ALLOWLIST";

/** The URL policy of model downloads (and of a tenant's own S3 endpoint). */
export function modelUrlPolicy(allow: AllowList): UrlPolicy {
  return { allow, schemes: ["https:"], allowListedSchemes: ["http:"], allowListName: MODEL_ALLOWLIST_VAR };
}

/** `outside`: not in HEARTH_MODEL_DIRS (or not a local path at all); `missing`: would be inside, but is not there. */
export type ModelPathResult = { ok: true; path: string; exists: boolean } | { ok: false; code: "outside" | "missing"; reason: string };

const OUTSIDE = "the model is outside the directories allowed by HEARTH_MODEL_DIRS";

/**
 * Resolves a local model (absolute path or file:// URL, a file or a checkpoint directory) to its real
 * path inside one of `dirs`, through symlinks and `..` on both sides. A path that does not exist
 * (yet, or on this host) is judged by its nearest ancestor that does, and passes only when
 * `mustExist` is false; whatever lies outside gets one answer whether it exists or not, so the
 * answer tells a tenant nothing about the host's files.
 */
export async function resolveModelPath(model: string, dirs: readonly string[], options: { mustExist: boolean }): Promise<ModelPathResult> {
  let path: string;
  try {
    path = model.startsWith("file:") ? fileURLToPath(model) : model;
  } catch {
    return { ok: false, code: "outside", reason: "not a valid local file:// URL" };
  }
  if (!isAbsolute(path)) return { ok: false, code: "outside", reason: "a local model must be an absolute path or a file:// URL" };
  const realDirs = (await Promise.all(dirs.map((d) => realpath(d).catch(() => undefined)))).filter((d) => d !== undefined);
  const real = await realpath(path).catch(() => undefined);
  if (real !== undefined) {
    return realDirs.some((d) => isInside(d, real)) ? { ok: true, path: real, exists: true } : { ok: false, code: "outside", reason: OUTSIDE };
  }
  const parent = await realAncestor(path);
  if (parent === undefined || !realDirs.some((d) => d === parent || isInside(d, parent))) return { ok: false, code: "outside", reason: OUTSIDE };
  return options.mustExist ? { ok: false, code: "missing", reason: "the model does not exist" } : { ok: true, path, exists: false };
}

export interface ModelSourceRequest {
  model: string;
  /** Whether the tenant gives credentials for the model (and which S3 endpoint they are for). */
  modelCredentials?: { endpointUrl?: string };
}

/** Where a refusal points, below the engine: `model` or a credentials field. */
export type ModelSourceVerdict = { ok: true } | { ok: false; field: "model" | "modelCredentials" | "modelCredentials.endpointUrl"; reason: string };

/** The submission check of an engine's model (the API's). */
export async function checkModelSource(request: ModelSourceRequest, policy: ModelSourcePolicy): Promise<ModelSourceVerdict> {
  const { model, modelCredentials } = request;
  const refuse = (reason: string, field: "model" | "modelCredentials" | "modelCredentials.endpointUrl" = "model") => ({ ok: false, field, reason }) as const;
  if (model.startsWith("/") || model.startsWith("file:")) {
    if (modelCredentials !== undefined) return refuse("credentials are for s3:// models only", "modelCredentials");
    const r = await resolveModelPath(model, policy.modelDirs, { mustExist: false });
    return r.ok ? { ok: true } : refuse(r.reason);
  }
  let url: URL;
  try {
    url = new URL(model);
  } catch {
    return refuse("not a valid URL");
  }
  const urlPolicy = modelUrlPolicy(policy.allow);
  const resolve = policy.resolve === undefined ? {} : { resolve: policy.resolve };
  if (url.protocol === "s3:") {
    if (url.hostname === "") return refuse("s3:// URLs name a bucket: s3://bucket/key");
    if (modelCredentials !== undefined) {
      if (modelCredentials.endpointUrl === undefined) return { ok: true };
      const v = await checkUrlAtSubmission(new URL(modelCredentials.endpointUrl), urlPolicy, resolve);
      return v.ok ? { ok: true } : refuse(v.reason, "modelCredentials.endpointUrl");
    }
    if (policy.allow.s3Buckets.has(url.hostname)) return { ok: true };
    return refuse(`s3://${url.hostname} is not a bucket ${MODEL_ALLOWLIST_VAR} lists: give engine.modelCredentials for a bucket of your own`);
  }
  if (modelCredentials !== undefined) return refuse("credentials are for s3:// models only", "modelCredentials");
  const v = await checkUrlAtSubmission(url, urlPolicy, resolve);
  return v.ok ? { ok: true } : refuse(v.reason);
}

/**
 * Whether a worker of this model may use the operator's S3 credentials: only for an `s3://` model in
 * an allow-listed bucket that the tenant gave no credentials for. Anything else gets none, since a
 * worker may run a tenant's code.
 */
export function usesOperatorS3Credentials(model: string, hasTenantCredentials: boolean, allow: AllowList): boolean {
  if (hasTenantCredentials || !model.startsWith("s3://")) return false;
  try {
    return allow.s3Buckets.has(new URL(model).hostname);
  } catch {
    return false;
  }
}
