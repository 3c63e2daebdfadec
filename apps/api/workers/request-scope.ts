import postgres from "postgres";
import { drizzle } from "drizzle-orm/postgres-js";
import * as schema from "../../../core/db/schema.ts";
import type { Db, DbHandle } from "../../../core/db/client.ts";
import type { WorkersConfig } from "../../../core/config/workers-config.ts";
import type { Log } from "../../../core/log/process-log.ts";
import { EMPTY_ALLOW_LIST } from "../../../core/net/url-policy.ts";
import type { ObjectStore } from "../../../core/objects/object-store.ts";
import { connectRedis } from "../../../core/redis/connect.ts";
import { createApp } from "../app.ts";
import { RequestDeps } from "./request-deps.ts";
import { ApiError } from "../api-error.ts";
import { buildApiServices } from "../api-services.ts";

/** A Worker's `ctx`: what keeps the request's context alive after its response is returned. */
export interface WaitUntil {
  waitUntil(promise: Promise<unknown>): void;
}

/** Redis' CLIENT SETNAME and Postgres' application_name of a Worker's connections: an operator (and a test) sees them come and go. */
export const WORKERS_CONNECTION_NAME = "hearth-api-workers";

/** Only the origin reads outputs back (`GET /api/v1/jobs/:id/output` is forwarded); nothing here writes one. */
const noObjects: ObjectStore = {
  kind: "s3",
  put: () => Promise.reject(new ApiError(501, "not_on_workers", "objects are written by the control plane, not by the API on Workers")),
  get: () => Promise.reject(new ApiError(501, "not_on_workers", "read outputs through the origin API")),
};

/**
 * Answers one request with the app on connections of its own. workerd binds every socket to the
 * request that opened it ("Cannot perform I/O on behalf of a different request"), so Redis and
 * Postgres connections cannot outlive a request or serve two: they are opened lazily (a request
 * that touches neither opens neither), and closed once the response body has been sent or
 * cancelled (SSE and long-polls keep them while they stream).
 */
export class WorkersApi {
  private readonly requestDeps = new RequestDeps();
  /** The isolate's one app, on `requestDeps`' facade; built at the first request. */
  private app: ReturnType<typeof createApp> | undefined;

  constructor(private readonly config: WorkersConfig, private readonly adminToken: string, private readonly log: Log) {}

  async serve(request: Request, ctx: WaitUntil): Promise<Response> {
    const { config, adminToken, log } = this;
    // Fail fast while Redis is away (503 with Retry-After), as the Node API does.
    const redis = connectRedis(config.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectionName: WORKERS_CONNECTION_NAME });
    const subscriber = connectRedis(config.redisUrl, { lazyConnect: true, connectionName: WORKERS_CONNECTION_NAME });
    redis.on("error", () => {});
    subscriber.on("error", () => {});
    // One connection: a request's queries run one after another; postgres.js picks cloudflare:sockets under workerd.
    const sql = postgres(config.databaseUrl, { max: 1, onnotice: () => {}, connect_timeout: 10, fetch_types: false, connection: { application_name: WORKERS_CONNECTION_NAME } });
    const dbh: DbHandle = { sql, db: drizzle(sql, { schema }) as Db, close: () => sql.end({ timeout: 5 }) };
    const services = buildApiServices(
      { redis, subscriber, dbh },
      {
        redisPrefix: config.redisPrefix,
        handlerDirs: [],
        adminToken,
        ...(config.secretsKey && { secretsKey: config.secretsKey }),
        egressAllowHttp: config.egressAllowHttp,
        egressAllowList: config.egressAllowList,
        modelPolicy: { modelDirs: [], allow: EMPTY_ALLOW_LIST },
        limitDefaults: config.limitDefaults,
        admission: config.admission,
        billingMode: config.billingMode,
        retention: config.retention,
        objects: { store: noObjects, offloadBytes: config.offloadBytes, ...(config.platformBucket !== undefined && { platformBucket: config.platformBucket }) },
      },
      { log, metrics: false },
    );
    let closed: Promise<void> | undefined;
    const close = () =>
      (closed ??= (async () => {
        await services.close().catch(() => {});
        redis.disconnect();
        await dbh.close().catch(() => {});
      })());
    try {
      const app = (this.app ??= createApp(this.requestDeps.facade(services.deps)));
      const response = await this.requestDeps.run(services.deps, () => app.fetch(request));
      return closeWhenSent(response, close, ctx);
    } catch (err) {
      ctx.waitUntil(close());
      throw err;
    }
  }
}

/** The response, its body passed through so that `close` runs once it has been read to the end or cancelled. */
function closeWhenSent(response: Response, close: () => Promise<void>, ctx: WaitUntil): Response {
  if (response.body === null) {
    ctx.waitUntil(close());
    return response;
  }
  let finish!: () => void;
  ctx.waitUntil(new Promise<void>((resolve) => (finish = resolve)).then(close));
  const reader = response.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          finish();
        } else controller.enqueue(value);
      } catch (err) {
        controller.error(err);
        finish();
      }
    },
    cancel(reason) {
      finish();
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}
