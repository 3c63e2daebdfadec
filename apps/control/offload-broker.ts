import type { Redis } from "ioredis";
import { z } from "zod";
import type { S3ObjectStoreOptions } from "../../core/objects/s3-object-store.ts";
import {
  inputGrant,
  multipartGrant,
  offloadRequest,
  partsGrant,
  putGrant,
  type OffloadReply,
  type OffloadRequest,
  type OffloadTarget,
} from "../../core/contracts/offload.ts";
import { trimSlashes, type S3ConfigValue } from "../../core/contracts/job-request.ts";
import { jobData, type JobData } from "../../core/queue/job-catalog.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import { checkUrlAtSubmission, connectionLookup } from "../../core/net/host-resolution.ts";
import type { UrlPolicy } from "../../core/net/url-policy.ts";
import { openS3Config } from "../../core/secrets/job-secrets.ts";
import type { SecretBox } from "../../core/secrets/secret-box.ts";
import { tenantS3Client } from "../../core/objects/tenant-s3-client.ts";
import { engineCacheRequest, type EngineCacheRequest } from "../../core/contracts/engine-cache.ts";
import type { EngineCacheGrants } from "./engine-cache-grants.ts";
import { GrantRefused } from "./grant-refused.ts";
import {
  MAX_PRESIGN_S,
  beginMultipart,
  presignAbort,
  presignComplete,
  presignGet,
  presignParts,
  presignPut,
  type S3Place,
} from "../../core/objects/s3-presign.ts";

/** How long an answer waits for its worker before Redis drops it (ms). */
const REPLY_TTL_MS = 60_000;
/** Upload URLs: long enough for a slow part, short enough to be worthless soon after. */
const UPLOAD_URL_S = 3600;
/** Part URLs handed out per request (a worker asks again when it runs out). */
export const PARTS_PER_GRANT = 16;
/** Requests answered at once; the rest wait in the list. */
const MAX_IN_FLIGHT = 32;


export interface OffloadBrokerOptions {
  /** Duplicated for the blocking reads; used as is for the answers. */
  redis: Redis;
  keys: RedisKeys;
  log: Log;
  /** Opens jobs' sealed `s3Config`. Without it only the platform bucket serves. */
  secrets?: SecretBox;
  /** The platform bucket (HEARTH_OUTPUT_BUCKET) on the control plane's own credentials. */
  platform?: S3ObjectStoreOptions;
  /** Where a tenant's `endpointUrl` may point (the same egress policy as webhooks). */
  egress: UrlPolicy;
  /** Engine cache snapshots (HEARTH_ENGINE_CACHE_BUCKET); without it their requests are refused. */
  engineCache?: EngineCacheGrants;
  now?: () => number;
}

/** Everything workers ask the broker for on the one request list. */
const brokerRequest = z.union([offloadRequest, engineCacheRequest]);
type BrokerRequest = OffloadRequest | EngineCacheRequest;


interface Place extends S3Place {
  /** Prepended to `<job id>/<name>`: the object path, or the platform prefix and tenant. */
  keyPrefix: string;
  /** Closed after the grant (a tenant's client); the platform's is kept. */
  owned: boolean;
}

/**
 * Hands workers presigned S3 URLs for their jobs' objects, so that no worker holds a credential:
 * it reads the job from BullMQ (only a job that is being processed gets a grant), opens its sealed
 * `s3Config` (else uses the platform bucket), and answers with URLs for that job's keys only. An
 * endpoint URL is checked against the egress policy at each grant, and the broker's own requests
 * (starting a multipart upload) connect only to addresses it allows.
 */
export class OffloadBroker {
  private blocking: Redis | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly now: () => number;

  constructor(private readonly options: OffloadBrokerOptions) {
    this.now = options.now ?? Date.now;
  }

  start(): void {
    const conn = this.options.redis.duplicate();
    conn.on("error", () => {}); // reconnects by itself; the loop logs failed rounds
    this.blocking = conn;
    this.running = this.loop(conn);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.blocking?.disconnect();
    await this.running;
    await Promise.all(this.inFlight);
  }

  private async loop(conn: Redis): Promise<void> {
    const key = this.options.keys.offloadRequests();
    while (!this.stopped) {
      try {
        while (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight);
        const got = await conn.blpop(key, 1);
        if (got === null) continue;
        const task = this.answer(got[1]).finally(() => this.inFlight.delete(task));
        this.inFlight.add(task);
      } catch (err) {
        if (this.stopped) break;
        this.options.log({ level: "warn", msg: "offload broker read failed", ...errorFields(err) });
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  /** Answers one raw request; a request too malformed to name its asker is dropped with a log line. */
  async answer(raw: string): Promise<void> {
    let req: BrokerRequest;
    try {
      req = brokerRequest.parse(JSON.parse(raw));
    } catch {
      this.options.log({ level: "warn", msg: "offload request dropped: not a request", bytes: raw.length });
      return;
    }
    let reply: OffloadReply;
    try {
      reply = { ok: true, grant: await this.grant(req) };
    } catch (err) {
      const refused = err instanceof GrantRefused;
      // S3's own errors name the bucket or key at most; the credentials are not in them.
      const message = refused ? err.message : `S3 refused: ${(err as Error).name}: ${(err as Error).message}`;
      if (!refused) this.options.log({ level: "warn", msg: "offload grant failed", ...("jobId" in req && { jobId: req.jobId }), endpointId: req.endpointId, kind: req.kind, ...errorFields(err) });
      reply = { ok: false, error: message };
    }
    const key = this.options.keys.offloadReply(req.endpointId, req.id);
    await this.options.redis.multi().rpush(key, JSON.stringify(reply)).pexpire(key, REPLY_TTL_MS).exec();
  }

  private async grant(req: BrokerRequest): Promise<unknown> {
    if (req.kind === "engine-cache-restore" || req.kind === "engine-cache-archive") {
      if (!this.options.engineCache) throw new GrantRefused("the control plane keeps no engine caches (HEARTH_ENGINE_CACHE_BUCKET is not set)");
      return this.options.engineCache.grant(req);
    }
    const data = await this.activeJob(req.endpointId, req.jobId);
    const place = await this.placeFor(req.jobId, data);
    try {
      if (req.kind === "input") return inputGrant.parse(await this.inputUrl(req.jobId, data, place));
      const key = `${place.keyPrefix}${req.jobId}/${req.name}`;
      switch (req.kind) {
        case "put":
          return putGrant.parse({ putUrl: await presignPut(place, key, UPLOAD_URL_S), target: await this.target(place, key) });
        case "multipart": {
          const uploadId = await beginMultipart(place, key);
          return multipartGrant.parse({
            uploadId,
            partUrls: await presignParts(place, key, uploadId, 1, PARTS_PER_GRANT, UPLOAD_URL_S),
            completeUrl: await presignComplete(place, key, uploadId, UPLOAD_URL_S),
            abortUrl: await presignAbort(place, key, uploadId, UPLOAD_URL_S),
            target: await this.target(place, key),
          });
        }
        case "parts":
          return partsGrant.parse({ partUrls: await presignParts(place, key, req.uploadId, req.from, req.count, UPLOAD_URL_S) });
      }
    } finally {
      if (place.owned) place.client.destroy();
    }
  }

  /** The job's data, if it is one of this endpoint's and a worker holds it now. */
  private async activeJob(endpointId: string, jobId: string): Promise<JobData> {
    const { redis, keys } = this.options;
    const [raw, locked] = await Promise.all([redis.hget(keys.job(endpointId, jobId), "data"), redis.exists(keys.jobLock(endpointId, jobId))]);
    if (raw === null || locked === 0) throw new GrantRefused(`job ${jobId} is not running on endpoint ${endpointId}`);
    const parsed = jobData.safeParse(JSON.parse(raw));
    if (!parsed.success || parsed.data.endpointId !== endpointId) throw new GrantRefused(`job ${jobId} is not running on endpoint ${endpointId}`);
    return parsed.data;
  }

  private async placeFor(jobId: string, data: JobData): Promise<Place> {
    if (data.s3ConfigSealed !== undefined) {
      if (!this.options.secrets) throw new GrantRefused("the control plane cannot open s3Config: HEARTH_SECRETS_KEY is not set");
      let config: S3ConfigValue;
      try {
        config = openS3Config(this.options.secrets, jobId, data.s3ConfigSealed);
      } catch (err) {
        throw new GrantRefused(`s3Config cannot be opened: ${(err as Error).message}`);
      }
      // Checked at submission; checked again now, and the broker's own connections check each address.
      const url = new URL(config.endpointUrl);
      const early = await checkUrlAtSubmission(url, this.options.egress).catch(() => ({ ok: true }) as const);
      if (!early.ok) throw new GrantRefused(`s3Config.endpointUrl refused: ${early.reason}`);
      const connect = connectionLookup(url, this.options.egress);
      if (!connect.ok) throw new GrantRefused(`s3Config.endpointUrl refused: ${connect.reason}`);
      const path = trimSlashes(config.objectPath ?? "");
      return { client: tenantS3Client(config, connect.lookup), bucket: config.bucketName, keyPrefix: path === "" ? "" : `${path}/`, owned: true };
    }
    const platform = this.options.platform;
    if (!platform) throw new GrantRefused("the job has no s3Config and the platform has no bucket (HEARTH_OUTPUT_BUCKET)");
    return { client: platform.client, bucket: platform.bucket, keyPrefix: `${platform.prefix}jobs/${data.tenantId}/`, owned: false };
  }

  private async target(place: Place, key: string): Promise<OffloadTarget> {
    return {
      bucket: place.bucket,
      key,
      url: await presignGet(place, key, MAX_PRESIGN_S),
      expiresAt: new Date(this.now() + MAX_PRESIGN_S * 1000).toISOString(),
    };
  }

  /** The input's object: in the job's own bucket, or under the tenant's own keys of the platform bucket. */
  private async inputUrl(jobId: string, data: JobData, place: Place): Promise<{ url: string; uri: string }> {
    const uri = data.inputRef;
    if (uri === undefined) throw new GrantRefused(`job ${jobId} has no inputRef`);
    const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
    if (!m) throw new GrantRefused(`inputRef ${JSON.stringify(uri)} is not s3://bucket/key`);
    const [, bucket, key] = m as unknown as [string, string, string];
    if (bucket !== place.bucket) throw new GrantRefused(`inputRef bucket ${JSON.stringify(bucket)} is not the job's bucket`);
    if (!place.owned && !key.startsWith(place.keyPrefix)) throw new GrantRefused(`inputRef ${JSON.stringify(uri)} is not one of this tenant's objects in the platform bucket`);
    return { url: await presignGet(place, key, UPLOAD_URL_S), uri };
  }
}
