import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import type { JobRecordView } from "../services/job-records.ts";
import { JOB_STATUSES } from "../../../core/contracts/job-view.ts";
import { resourceId } from "../../../core/contracts/safe-text.ts";
import { ApiError } from "../api-error.ts";
import type { TenantEnv } from "../middleware/tenant-auth.ts";
import { decodeCursor, jobRecordView, workerSessionView } from "../services/job-records.ts";
import type { ApiDeps } from "../api-deps.ts";
import { apiRouter, badCursor, commonErrors, notFound, okJson, optionalQuery, tenantSecurity, withExample } from "./route-kit.ts";
import { jobRecordExample, jobRecordPage, storedOutputExample, workerSessionExample } from "./examples/record-examples.ts";

/** Query of `GET /api/v1/jobs`: times are ISO-8601 (`from` inclusive, `to` exclusive, on submission). */
export const jobListQuery = z.object({
  endpointId: optionalQuery(resourceId),
  status: optionalQuery(z.enum(JOB_STATUSES)),
  from: optionalQuery(z.iso.datetime({ offset: true })).transform((s) => (s === undefined ? undefined : new Date(s))),
  to: optionalQuery(z.iso.datetime({ offset: true })).transform((s) => (s === undefined ? undefined : new Date(s))),
  cursor: optionalQuery(z.string().max(512)).describe("`nextCursor` of the previous page."),
  limit: optionalQuery(z.coerce.number().int().min(1).max(500)).transform((n) => n ?? 50),
});

const idParam = z.object({ id: resourceId });
const errors = { 400: commonErrors[400], 401: commonErrors[401], 404: notFound("job") };

const routes = {
  listJobs: createRoute({
    method: "get",
    path: "/jobs",
    summary: "The tenant's job records, newest first",
    tags: ["records"],
    security: tenantSecurity,
    request: { query: jobListQuery },
    responses: { ...okJson(z.object({ items: z.array(jobRecordView), nextCursor: z.string().nullable() }), "One page of records.", jobRecordPage), ...errors, 400: withExample(errors[400], badCursor()), 404: commonErrors[404] },
  }),
  getJob: createRoute({
    method: "get",
    path: "/jobs/{id}",
    summary: "One job's durable record (after Redis retention too)",
    tags: ["records"],
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(jobRecordView, "The record.", jobRecordExample), ...errors },
  }),
  output: createRoute({
    method: "get",
    path: "/jobs/{id}/output",
    summary: "A job's output kept in the object store (over 256 KB), as JSON",
    tags: ["records"],
    security: tenantSecurity,
    request: { params: idParam },
    responses: {
      200: { description: "The output as JSON, byte for byte as the worker returned it (`outputRef.sha256` is its hash).", content: { "application/json": { schema: z.unknown(), example: storedOutputExample } } },
      ...errors,
      404: notFound("stored output of this job"),
    },
  }),
  workers: createRoute({
    method: "get",
    path: "/endpoints/{id}/workers",
    summary: "An endpoint's worker sessions with their transitions",
    tags: ["records"],
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(z.object({ items: z.array(workerSessionView) }), "Newest first.", { items: [workerSessionExample] }), ...errors, 404: commonErrors[404] },
  }),
};

/** The durable side of jobs and workers, from Postgres: what stays after Redis' retention. Mounted under `/api/v1`, behind its tenant auth. */
export function recordRoutes(deps: ApiDeps): OpenAPIHono<TenantEnv> {
  const app = apiRouter<TenantEnv>();

  app.openapi(routes.listJobs, async (c) => {
    const q = c.req.valid("query");
    const tenantId = c.get("principal").tenantId;
    // A damaged cursor would otherwise restart the listing: a client would page for ever.
    if (q.cursor !== undefined && !decodeCursor(q.cursor)) throw badCursor();
    if (q.endpointId !== undefined && !(await deps.endpoints.getOwned(tenantId, q.endpointId))) throw ApiError.notFound("endpoint");
    const page = await deps.records.list({ tenantId, ...definedOnly(q) });
    // One more indexed read per page (the sessions' GPU types): the listing shows the same costs as the record.
    const items = await deps.sessionCosts.withJobCosts(page.items);
    return c.json({ ...page, items: items.map((r) => absoluteOutputUrl(r, c.req.url)) }, 200);
  });

  app.openapi(routes.getJob, async (c) => {
    const record = await deps.records.get(c.get("principal").tenantId, c.req.valid("param").id);
    if (!record) throw ApiError.notFound("job");
    const [priced] = await deps.sessionCosts.withJobCosts([record]);
    return c.json(absoluteOutputUrl(priced!, c.req.url), 200);
  });

  app.openapi(routes.output, async (c) => {
    const ref = await deps.records.storedOutput(c.get("principal").tenantId, c.req.valid("param").id);
    if (!ref) throw ApiError.notFound("stored output of this job");
    // A record written by a control plane with another store (S3 here, local there) cannot be read from this one.
    if (ref.store !== deps.objects.kind) throw new ApiError(404, "not_found", `the output is in the ${ref.store} object store; this API reads the ${deps.objects.kind} one`);
    const bytes = await deps.objects.get(ref.key);
    if (!bytes) throw ApiError.notFound("stored output of this job");
    // The stored bytes as they are (not re-serialised): the route's typing expects a JSON value, hence the cast.
    return c.body(new Uint8Array(bytes), 200, { "content-type": "application/json", "x-content-sha256": ref.sha256 }) as never;
  });

  app.openapi(routes.workers, async (c) => {
    // Deleted endpoints too: their sessions are history the tenant may need (billing disputes).
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, c.req.valid("param").id, { includeDeleted: true });
    if (!ep) throw ApiError.notFound("endpoint");
    return c.json({ items: await deps.records.workerSessions(ep.id) }, 200);
  });

  return app;
}

function definedOnly<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

/** A stored output's `url` on this API's own origin (the record keeps it relative). */
function absoluteOutputUrl(r: JobRecordView, requestUrl: string): JobRecordView {
  const ref = r.outputRef;
  if (ref === null || ref === "redis") return r;
  return { ...r, outputRef: { ...ref, url: new URL(ref.url, requestUrl).href } };
}
