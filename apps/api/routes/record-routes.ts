import { Hono } from "hono";
import { z } from "zod";
import { ApiError } from "../api-error.ts";
import { tenantAuth, type TenantEnv } from "../middleware/tenant-auth.ts";
import { validate } from "../validation.ts";
import { decodeCursor } from "../services/job-records.ts";
import type { ApiDeps } from "../api-deps.ts";

const JOB_STATUSES = ["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"] as const;

/** Query of `GET /api/v1/jobs`: times are ISO-8601 (`from` inclusive, `to` exclusive, on submission). */
export const jobListQuery = z.object({
  endpointId: z.string().min(1).max(64).optional(),
  status: z.enum(JOB_STATUSES).optional(),
  from: z.iso.datetime({ offset: true }).transform((s) => new Date(s)).optional(),
  to: z.iso.datetime({ offset: true }).transform((s) => new Date(s)).optional(),
  cursor: z.string().max(512).optional(),
  limit: z.coerce.number().int().min(1).max(500).default(50),
});

/** The durable side of jobs and workers, from Postgres: what stays after Redis' retention. */
export function recordRoutes(deps: ApiDeps): Hono<TenantEnv> {
  const app = new Hono<TenantEnv>();
  // Per route, not "*": this app shares the /api/v1 prefix with the management routes.
  const auth = tenantAuth({ tenants: deps.tenants });

  app.get("/jobs", auth, async (c) => {
    const q = validate(jobListQuery, Object.fromEntries(Object.entries(c.req.query()).filter(([, v]) => v !== "")));
    const tenantId = c.get("principal").tenantId;
    // A damaged cursor would otherwise restart the listing: a client would page for ever.
    if (q.cursor !== undefined && !decodeCursor(q.cursor)) throw ApiError.badRequest("cursor: not a cursor this API returned", [{ path: "cursor", message: "not a cursor this API returned" }]);
    if (q.endpointId !== undefined && !(await deps.endpoints.getOwned(tenantId, q.endpointId))) throw ApiError.notFound("endpoint");
    return c.json(await deps.records.list({ tenantId, ...definedOnly(q) }), 200);
  });

  app.get("/jobs/:id", auth, async (c) => {
    const record = await deps.records.get(c.get("principal").tenantId, c.req.param("id"));
    if (!record) throw ApiError.notFound("job");
    return c.json(record, 200);
  });

  app.get("/endpoints/:id/workers", auth, async (c) => {
    // Deleted endpoints too: their sessions are history the tenant may need (billing disputes).
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, c.req.param("id"), { includeDeleted: true });
    if (!ep) throw ApiError.notFound("endpoint");
    return c.json({ items: await deps.records.workerSessions(ep.id) }, 200);
  });

  return app;
}

function definedOnly<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}
