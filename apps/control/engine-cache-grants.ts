import { GetObjectCommand } from "@aws-sdk/client-s3";
import type { Sql } from "postgres";
import { z } from "zod";
import { archiveGrant, restoreGrant, type ArchiveGrant, type EngineCacheRequest, type RestoreGrant } from "../../core/contracts/engine-cache.ts";
import { ENGINE_PROFILES } from "../../core/engine/engine-profiles.ts";
import type { S3ObjectStoreOptions } from "../../core/objects/s3-object-store.ts";
import { presignGet, presignPut, presignPutOfLength } from "../../core/objects/s3-presign.ts";
import { archiveKey, manifestKey, snapshotFolder, snapshotManifest, type SnapshotManifest } from "../../core/weights/engine-cache-key.ts";
import { BoundedMap } from "./bounded-map.ts";
import { GrantRefused } from "./grant-refused.ts";

/** A snapshot GET: long enough for gigabytes on a slow link, worthless soon after. */
const GET_URL_S = 3600;
/** Upload URLs: the archive is built before they are asked for, so only the upload itself must fit. */
const PUT_URL_S = 3600;
/** How long an endpoint's tenant and profile are remembered (ms): a tenant never changes, a profile rarely. */
const ENDPOINT_TTL_MS = 30_000;
/** A manifest is a few hundred bytes; anything much longer was not written by a worker. */
const MAX_MANIFEST_BYTES = 4096;

export interface EngineCacheGrantsOptions {
  /** Where the endpoint's tenant is read (the broker trusts nothing the worker says about it). */
  sql: Sql;
  /** HEARTH_ENGINE_CACHE_BUCKET, on the control plane's credentials. */
  bucket: S3ObjectStoreOptions;
  now?: () => number;
}

const endpointEngine = z.object({ kind: z.literal("openai"), profile: z.enum(ENGINE_PROFILES) });

/**
 * Presigned URLs for engine cache snapshots (core/contracts/engine-cache.ts). The snapshot's key is
 * built here from the endpoint's tenant as Postgres has it, so a worker reads and writes its own
 * tenant's snapshots only, whatever it asks; only a live `openai` endpoint whose profile is the one
 * asked for gets URLs (a handler endpoint, whose code runs inside its worker, gets none). The
 * broker reads the manifest itself (one small GET), so a worker's restore is one round trip.
 */
export class EngineCacheGrants {
  private readonly endpoints = new BoundedMap<string, { tenantId: string; profile: string; at: number }>(10_000);
  private readonly now: () => number;

  constructor(private readonly options: EngineCacheGrantsOptions) {
    this.now = options.now ?? Date.now;
  }

  async grant(req: EngineCacheRequest): Promise<RestoreGrant | ArchiveGrant> {
    const tenantId = await this.tenantOf(req.endpointId, req.snapshot.profile);
    const folder = this.options.bucket.prefix + snapshotFolder(tenantId, req.snapshot);
    const current = await this.readManifest(manifestKey(folder));
    if (req.kind === "engine-cache-restore") {
      if (current === undefined) return restoreGrant.parse({ snapshot: null });
      const url = await presignGet(this.options.bucket, archiveKey(folder, current.sha256), GET_URL_S);
      return restoreGrant.parse({ snapshot: { sha256: current.sha256, bytes: current.bytes, url } });
    }
    // First writer wins; a worker that found the current snapshot damaged or hostile may replace exactly that one.
    if (current !== undefined && current.sha256 !== req.replaces) return archiveGrant.parse({ exists: true });
    return archiveGrant.parse({
      exists: false,
      archiveUrl: await presignPutOfLength(this.options.bucket, archiveKey(folder, req.sha256), req.bytes, PUT_URL_S),
      manifestUrl: await presignPut(this.options.bucket, manifestKey(folder), PUT_URL_S),
    });
  }

  /** The endpoint's tenant, if it is a live openai endpoint of `profile`. */
  private async tenantOf(endpointId: string, profile: string): Promise<string> {
    let known = this.endpoints.get(endpointId);
    if (known === undefined || this.now() - known.at > ENDPOINT_TTL_MS) {
      const rows = await this.options.sql<{ tenant_id: string; engine: unknown }[]>`
        select tenant_id, engine from endpoints where id = ${endpointId} and deleted_at is null`;
      const row = rows[0];
      const engine = endpointEngine.safeParse(row?.engine);
      if (row === undefined || !engine.success) throw new GrantRefused(`endpoint ${endpointId} is not a live openai endpoint`);
      known = { tenantId: row.tenant_id, profile: engine.data.profile, at: this.now() };
      this.endpoints.set(endpointId, known);
    }
    if (known.profile !== profile) throw new GrantRefused(`endpoint ${endpointId} runs the ${known.profile} profile, not ${profile}`);
    return known.tenantId;
  }

  /** The snapshot's manifest, or undefined when there is none (or none worth reading: a damaged one is replaced by the next archive). */
  private async readManifest(key: string): Promise<SnapshotManifest | undefined> {
    const { bucket, client } = this.options.bucket;
    let text: string;
    try {
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      if ((res.ContentLength ?? 0) > MAX_MANIFEST_BYTES) return undefined;
      text = (await res.Body?.transformToString()) ?? "";
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    try {
      const parsed = snapshotManifest.safeParse(JSON.parse(text));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === "NoSuchKey" || e.name === "NotFound" || e.$metadata?.httpStatusCode === 404;
}
