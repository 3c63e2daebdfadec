import { createHash } from "node:crypto";

/**
 * Turns an endpoint's `model` URI into a local path an engine can open. One implementation per
 * URI scheme; `ModelStore` picks one and makes its result durable.
 */
export interface ModelSource {
  /** URL protocols it handles, with the colon, as `URL.protocol` spells them: `["s3:"]`. */
  readonly schemes: readonly string[];
  /**
   * Fetches `uri` below `destDir` (which does not exist yet; the source creates it) and returns the
   * path of the file or directory it wrote there, never `destDir` itself. A source that needs no
   * copy (a local file) returns a path outside `destDir` and writes nothing. Rejects with a
   * `ModelSourceError`; whatever it left in `destDir` is removed by the store.
   */
  materialise(uri: URL, destDir: string, signal?: AbortSignal, hooks?: DownloadHooks): Promise<string | MaterialisedModel>;
  /** False for a source that never copies (local files): the store then neither locks nor caches. Default true. */
  readonly copies?: boolean;
  /**
   * Refuses (MODEL_SOURCE_FORBIDDEN) a URI this source may not fetch. The store asks before it
   * looks in its cache, so a model cached earlier is not handed out past a policy that now refuses it.
   */
  authorize?(uri: URL): Promise<void>;
  /**
   * Set when what this source may read depends on whose credentials it holds: mixed into the cache
   * key, so a model fetched with one tenant's credentials is never served to a worker without them.
   */
  readonly cacheScope?: string;
}

/** What a source may return instead of a bare path: the sha256 it computed on the way (the store then does not read the file again). */
export interface MaterialisedModel {
  path: string;
  /** Hex sha256 of the file's bytes (single files only). */
  sha256?: string;
}

/** How a source reports to the store while it downloads. */
export interface DownloadHooks {
  /**
   * The bytes the model will take, as soon as the source knows (before the body): the store makes
   * room under HEARTH_MODEL_CACHE_BYTES, or rejects (MODEL_CACHE_TOO_SMALL) and the source gives up.
   */
  expectBytes?(total: number): Promise<void>;
  /** Bytes received, as they arrive. */
  onBytes?(bytes: number): void;
}

export type ModelErrorCode =
  | "MODEL_URI_INVALID"
  | "MODEL_SCHEME_UNSUPPORTED"
  | "MODEL_NOT_FOUND"
  | "MODEL_FETCH_FAILED"
  | "MODEL_FETCH_ABORTED"
  | "MODEL_CACHE_CONFLICT"
  | "MODEL_SOURCE_FORBIDDEN"
  | "MODEL_CHECKSUM_MISMATCH"
  | "MODEL_CACHE_TOO_SMALL";

/**
 * Why a model could not be made local. `MODEL_NOT_FOUND` is permanent for that URI; `MODEL_FETCH_FAILED`
 * may pass; `MODEL_SOURCE_FORBIDDEN` is the operator's policy (HEARTH_MODEL_DIRS, HEARTH_MODEL_ALLOWLIST,
 * private addresses) refusing where the model is or where a download would connect. `MODEL_CHECKSUM_MISMATCH`:
 * the bytes are not what the URI (`#sha256=`) or the server (S3 ChecksumSHA256, a single-part ETag)
 * says. `MODEL_CACHE_TOO_SMALL`: the model does not fit under HEARTH_MODEL_CACHE_BYTES (or the models
 * running workers use keep it full).
 */
export class ModelSourceError extends Error {
  constructor(
    readonly code: ModelErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ModelSourceError";
  }
}

/** A URI fit for logs and error messages: no user info and no query (presigned URLs carry signatures there). */
export function redactUri(uri: URL): string {
  if (uri.protocol === "file:") return uri.pathname;
  return `${uri.protocol}//${uri.host}${uri.pathname}`;
}

/** The cache directory name for a model URI: stable across processes and hosts. */
export function cacheKey(uri: string): string {
  return createHash("sha256").update(uri).digest("hex").slice(0, 16);
}

