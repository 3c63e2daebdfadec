import { createHash } from "node:crypto";
import { z } from "zod";
import { ENGINE_PROFILES } from "../engine/engine-profiles.ts";
import { KEY_SEGMENT } from "../objects/s3-names.ts";

/**
 * Where an engine cache snapshot lives in the bucket, and what it is keyed by. Pure.
 *
 * A snapshot holds what an engine compiled (Triton kernels, torch.compile artifacts, built
 * TensorRT engines): code the next engine loads and runs. It is written by a worker whose engine
 * runs a tenant's model and flags, so it is that tenant's code: the key starts with the tenant, and
 * the broker puts the tenant there from its own records, never from what the worker says. Within
 * a tenant, one snapshot serves every endpoint with the same image, GPU type, profile and model
 * (the tenant's endpoints all run code the same tenant chose).
 */

/** What a snapshot is for, as the worker states it (zod-checked again by the broker). */
export const snapshotParts = z.object({
  /** The worker image (HEARTH_IMAGE; `local` for the local provider): compiled code is only valid for the libraries that built it. */
  image: z.string().min(1).max(512).regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces"),
  /** The worker's GPU type (HEARTH_GPU_TYPE; `cpu` locally): kernels are compiled for one architecture. */
  gpuType: z.string().min(1).max(100).regex(/^[\x20-\x7e]+$/, "printable ASCII"),
  profile: z.enum(ENGINE_PROFILES),
  /**
   * The model: `sha256:<hex>` of its bytes when the weights cache knows them (s3://, https://), or
   * `file:<hex>`, a hash of a local model's real path, size and mtime (local models are used in place, never hashed whole).
   */
  model: z.string().regex(/^(sha256|file):[0-9a-f]{64}$/, "sha256:<64 hex> or file:<64 hex>"),
});
export type SnapshotParts = z.infer<typeof snapshotParts>;

/** Version of the layout below; a new one starts from empty caches rather than reading old snapshots wrongly. */
const LAYOUT = "v1";

/**
 * The folder (ending in `/`) of one snapshot: `engine-cache/v1/<tenant>/<profile>/<hash of image, GPU type and model>/`,
 * below the bucket's own prefix. Throws on a tenant id that is not one key segment (ids are `tn_…`).
 */
export function snapshotFolder(tenantId: string, parts: SnapshotParts): string {
  if (!KEY_SEGMENT.test(tenantId) || tenantId.length > 128) throw new Error(`tenant id ${JSON.stringify(tenantId)} cannot name a key segment`);
  const checked = snapshotParts.parse(parts);
  // JSON of a fixed order: no two different part lists hash alike by concatenation.
  const identity = createHash("sha256").update(JSON.stringify([checked.image, checked.gpuType, checked.profile, checked.model])).digest("hex");
  return `engine-cache/${LAYOUT}/${tenantId}/${checked.profile}/${identity}/`;
}

/** The manifest, written last: a snapshot exists once it does (an archive without one is an upload that did not finish). */
export function manifestKey(folder: string): string {
  return `${folder}manifest.json`;
}

/** The archive, named by its own sha256: two workers archiving at once never overwrite each other's bytes under a manifest. */
export function archiveKey(folder: string, sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error("an archive is named by its sha256 (64 hex)");
  return `${folder}${sha256}.tar.gz`;
}

/** The manifest's body. */
export const snapshotManifest = z.object({
  format: z.literal("hearth-engine-cache/1"),
  /** sha256 of the archive's bytes (the .tar.gz), checked by the worker that restores it. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().min(1),
  createdAt: z.string().max(40),
  /** The directories it holds (profile cache dir ids), for operators. */
  dirs: z.array(z.string().max(64)).max(16),
});
export type SnapshotManifest = z.infer<typeof snapshotManifest>;
