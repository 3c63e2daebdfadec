import { z } from "zod";
import { snapshotParts } from "../weights/engine-cache-key.ts";

/*
 * Engine cache snapshots between a worker and the control plane's broker
 * (apps/control/engine-cache-grants.ts), on the offload protocol's lists (core/contracts/offload.ts):
 * the worker holds no S3 credential, so it asks for presigned URLs for its snapshot, and the broker
 * decides the bucket and the key. The key's tenant comes from the broker's own record of the
 * endpoint, so a worker can only ever read or write its own tenant's snapshots; the answer goes to
 * a list only the asking endpoint's workers can read.
 */

/** S3's limit for one PUT (5 GiB): a snapshot is uploaded whole. */
export const MAX_SNAPSHOT_BYTES = 5 * 1024 ** 3;

const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const base = {
  /** Names the answer list; random per request. */
  id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/),
  endpointId: z.string().min(1).max(128),
  snapshot: snapshotParts,
};

export const engineCacheRequest = z.discriminatedUnion("kind", [
  /** Before the engine starts: is there a snapshot, and a presigned GET of it. */
  z.object({ kind: z.literal("engine-cache-restore"), ...base }),
  /**
   * After the engine's first healthy start, with the archive already built: presigned PUTs for it
   * (its length signed) and for the manifest. Granted only when no snapshot exists, or when the
   * existing one is `replaces` (one the worker found damaged or refused).
   */
  z.object({ kind: z.literal("engine-cache-archive"), ...base, sha256, bytes: z.number().int().min(1).max(MAX_SNAPSHOT_BYTES), replaces: sha256.optional() }),
]);
export type EngineCacheRequest = z.infer<typeof engineCacheRequest>;

export const restoreGrant = z.object({
  snapshot: z.union([
    z.null(),
    z.object({
      sha256,
      bytes: z.number().int().min(1).max(MAX_SNAPSHOT_BYTES),
      /** Presigned GET of the archive. */
      url: z.url(),
    }),
  ]),
});
export type RestoreGrant = z.infer<typeof restoreGrant>;

export const archiveGrant = z.union([
  /** Another worker's snapshot is there already: nothing to upload. */
  z.object({ exists: z.literal(true) }),
  z.object({ exists: z.literal(false), archiveUrl: z.url(), manifestUrl: z.url() }),
]);
export type ArchiveGrant = z.infer<typeof archiveGrant>;
