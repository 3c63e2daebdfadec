import { Hono, type Context } from "hono";
import { z } from "zod";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { runRequest } from "../../../core/contracts/job-request.ts";
import { ApiError } from "../api-error.ts";
import { jsonBodyLimit } from "../middleware/json-body-limit.ts";
import { tenantAuth, type TenantEnv } from "../middleware/tenant-auth.ts";
import { ASYNC_RETENTION_MS, syncRetentionMs } from "../services/job-submitter.ts";
import { endpointHealth } from "../services/endpoint-health.ts";
import { jsonBody, validate } from "../validation.ts";
import type { ApiDeps } from "../api-deps.ts";
import { openaiRoutes } from "./openai-routes.ts";

type JobEnv = { Variables: TenantEnv["Variables"] & { endpoint: Endpoint } };

const MB = 1024 * 1024;
const waitParam = (dflt: number, min: number, max: number) =>
  z.object({ wait: z.coerce.number().int().min(min).max(max).default(dflt) });
const syncWait = waitParam(90_000, 1000, 300_000);
/** `/stream` holds a poll briefly when nothing is buffered, so a client polling without pause (runpod-sdk) does not spin. */
const streamWait = waitParam(1000, 0, 10_000);

const queryOf = (c: Context) => ({ wait: c.req.query("wait") || undefined });

/** `Idempotency-Key`: printable ASCII, at most 255 characters (as Stripe takes it). */
const idempotencyHeader = z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, "must be 1-255 printable ASCII characters without spaces");
function idempotencyKeyOf(c: Context): string | undefined {
  const raw = c.req.header("idempotency-key");
  if (raw === undefined) return undefined;
  const r = idempotencyHeader.safeParse(raw);
  if (!r.success) throw ApiError.badRequest(`Idempotency-Key: ${r.error.issues[0]?.message ?? "invalid"}`, [{ path: "headers.idempotency-key", message: r.error.issues[0]?.message ?? "invalid" }]);
  return r.data;
}

/** The RunPod job API: `/v2/:endpointId/...`, exactly as runpod-contract.md §1. Every success is HTTP 200. */
export function jobRoutes(deps: ApiDeps): Hono<JobEnv> {
  const app = new Hono<JobEnv>();

  app.use("/:ep/*", tenantAuth({ tenants: deps.tenants }), async function endpointOwnership(c, next) {
    // Another tenant's endpoint is indistinguishable from a missing one.
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, c.req.param("ep")!);
    if (!ep) throw ApiError.notFound("endpoint");
    c.set("endpoint", ep);
    await next();
  });

  app.route("/:ep/openai/v1", openaiRoutes(deps.openai));

  app.post("/:ep/run", jsonBodyLimit(10 * MB), async (c) => {
    const idempotencyKey = idempotencyKeyOf(c);
    const req = await jsonBody(c, runRequest);
    const ep = c.get("endpoint");
    const submitted = await deps.submitter.submit(ep, ep.tenantId, req, { sync: false, retentionMs: ASYNC_RETENTION_MS, ...(idempotencyKey !== undefined && { idempotencyKey }) });
    if (submitted.repeated) {
      // The first submission's job, as it is now (RunPod answers /run with id and status only).
      const view = await deps.reader.view(ep.id, submitted.id);
      return c.json({ id: submitted.id, status: view?.status ?? "IN_QUEUE" }, 200);
    }
    return c.json({ id: submitted.id, status: "IN_QUEUE" }, 200);
  });

  app.post("/:ep/runsync", jsonBodyLimit(20 * MB), async (c) => {
    const { wait } = validate(syncWait, queryOf(c));
    const idempotencyKey = idempotencyKeyOf(c);
    const req = await jsonBody(c, runRequest);
    const ep = c.get("endpoint");
    const { id, view } = await deps.syncRuns.run(ep, req, { retentionMs: syncRetentionMs(wait), ...(idempotencyKey !== undefined && { idempotencyKey }) }, wait, c.req.raw.signal);
    return c.json(view ?? { id, status: "IN_QUEUE" }, 200);
  });

  const status = async (c: Context<JobEnv>) => {
    const view = await deps.reader.view(c.get("endpoint").id, c.req.param("id")!);
    if (!view) throw ApiError.notFound("job");
    return c.json(view, 200);
  };
  app.get("/:ep/status/:id", status);
  app.post("/:ep/status/:id", status);

  const statusSync = async (c: Context<JobEnv>) => {
    const { wait } = validate(syncWait, queryOf(c));
    const view = await deps.reader.waitFinished(c.get("endpoint").id, c.req.param("id")!, wait, c.req.raw.signal);
    if (!view) throw ApiError.notFound("job");
    return c.json(view, 200);
  };
  app.get("/:ep/status-sync/:id", statusSync);
  app.post("/:ep/status-sync/:id", statusSync);

  const stream = async (c: Context<JobEnv>) => {
    const { wait } = validate(streamWait, queryOf(c));
    const page = await deps.reader.drainStream(c.get("endpoint").id, c.req.param("id")!, wait, c.req.raw.signal);
    if (!page) throw ApiError.notFound("job");
    return c.json(page, 200);
  };
  app.get("/:ep/stream/:id", stream);
  app.post("/:ep/stream/:id", stream);

  app.post("/:ep/cancel/:id", async (c) => c.json(await deps.control.cancel(c.get("endpoint").id, c.req.param("id")), 200));
  app.post("/:ep/retry/:id", async (c) => c.json(await deps.control.retry(c.get("endpoint").id, c.req.param("id")), 200));
  app.post("/:ep/purge-queue", async (c) => c.json({ removed: await deps.control.purge(c.get("endpoint").id), status: "completed" }, 200));
  app.get("/:ep/health", async (c) => c.json(await endpointHealth(deps.queues, deps.redis, c.get("endpoint").id), 200));

  return app;
}
