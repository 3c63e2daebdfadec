import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { z } from "zod";
import { offloadReply, type OffloadRequest } from "../../core/contracts/offload.ts";
import type { EngineCacheRequest } from "../../core/contracts/engine-cache.ts";
import type { RedisKeys } from "../../core/queue/keys.ts";

/** Why the control plane gave no URL: its refusal, or no answer in time. */
export class OffloadError extends Error {
  override name = "OffloadError";
}

export interface OffloadClientOptions {
  /** For the request push; blocking reads get duplicates of it. Not closed here. */
  redis: Redis;
  keys: RedisKeys;
  endpointId: string;
  /** How long to wait for the control plane's answer (ms). Default 15000. */
  timeoutMs?: number;
}

/** A request as the caller gives it: the client adds the answer list's id and the endpoint. Engine cache snapshots ride on the same lists. */
type Ask = (OffloadRequest | EngineCacheRequest) extends infer R ? (R extends unknown ? Omit<R, "id" | "endpointId"> : never) : never;

/**
 * The worker's side of the offload protocol (core/contracts/offload.ts): push a request, wait for
 * the control plane's answer on a list only this endpoint can read. Each wait blocks a connection,
 * so concurrent jobs draw from a small pool of duplicates, opened on first use.
 */
export class OffloadClient {
  private readonly idle: Redis[] = [];
  private readonly all: Redis[] = [];
  private readonly timeoutMs: number;

  constructor(private readonly options: OffloadClientOptions) {
    this.timeoutMs = options.timeoutMs ?? 15_000;
  }

  async ask<S extends z.ZodType>(request: Ask, grant: S): Promise<z.infer<S>> {
    const { redis, keys, endpointId } = this.options;
    const id = randomBytes(12).toString("base64url");
    const conn = this.take();
    try {
      await redis.rpush(keys.offloadRequests(), JSON.stringify({ ...request, id, endpointId }));
      const got = await conn.blpop(keys.offloadReply(endpointId, id), this.timeoutMs / 1000);
      if (got === null) throw new OffloadError(`the control plane did not answer within ${this.timeoutMs} ms`);
      const reply = offloadReply.parse(JSON.parse(got[1]));
      if (!reply.ok) throw new OffloadError(reply.error);
      return grant.parse(reply.grant);
    } finally {
      this.idle.push(conn);
    }
  }

  private take(): Redis {
    const conn = this.idle.pop();
    if (conn) return conn;
    const fresh = this.options.redis.duplicate();
    fresh.on("error", () => {}); // a failed wait rejects its ask
    this.all.push(fresh);
    return fresh;
  }

  close(): void {
    for (const c of this.all) c.disconnect();
    this.all.length = 0;
    this.idle.length = 0;
  }
}
