import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { auditAction, auditEntryView } from "../../../core/contracts/audit.ts";
import { resourceId, safeText } from "../../../core/contracts/safe-text.ts";
import { ApiError } from "../api-error.ts";
import { requireBootstrap, type AdminEnv, type TenantEnv } from "../middleware/tenant-auth.ts";
import { adminKeyView } from "../services/admin-key-store.ts";
import { decodeAuditCursor, type AuditFilter } from "../services/audit-trail.ts";
import type { ApiDeps } from "../api-deps.ts";
import { adminSecurity, adminUnauthorized, apiRouter, badCursor, commonErrors, errorResponse, jsonRequest, notFound, okJson, optionalQuery, tenantSecurity, withExample } from "./route-kit.ts";
import { adminKeyExample, auditPageExample } from "./examples/audit-examples.ts";
import { ADMIN_KEY } from "./examples/example-ids.ts";

const LATEST = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
/** An ISO-8601 instant Postgres can hold (1970-9999): anything else is a 400, never a database error. */
const instant = z.iso
  .datetime({ offset: true })
  .refine((s) => Date.parse(s) >= 0 && Date.parse(s) <= LATEST, "must be between 1970 and 9999")
  .transform((s) => new Date(s));

const tenantAuditQuery = z.object({
  endpointId: optionalQuery(resourceId),
  action: optionalQuery(auditAction),
  actor: optionalQuery(resourceId).describe("An actor's id: `bootstrap`, an admin key's (`adk_…`) or an API key's (`key_…`)."),
  since: optionalQuery(instant).describe("Entries recorded at or after this instant (ISO-8601)."),
  until: optionalQuery(instant).describe("Entries recorded before this instant (ISO-8601)."),
  cursor: optionalQuery(z.string().max(512)).describe("`nextCursor` of the previous page."),
  limit: optionalQuery(z.coerce.number().int().min(1).max(500)).transform((n) => n ?? 50),
});
const adminAuditQuery = tenantAuditQuery.extend({ tenantId: optionalQuery(resourceId) });
export const auditPage = z.object({ items: z.array(auditEntryView), nextCursor: z.string().nullable() }).meta({ id: "AuditPage" });
const adminKeyCreate = z.strictObject({ name: safeText(191) });
const idParam = z.object({ id: resourceId });
const bootstrapOnly = errorResponse(
  "Only the bootstrap token (HEARTH_ADMIN_TOKEN) creates and revokes admin keys: `bootstrap_required`.",
  new ApiError(403, "bootstrap_required", "admin keys are created and revoked with the bootstrap token (HEARTH_ADMIN_TOKEN) only"),
);
/** A listing's 400: most often a cursor it did not return, or a malformed `since`. */
const listingError = withExample(commonErrors[400], badCursor());

const adminTags = ["admin"];
const routes = {
  adminAudit: createRoute({
    method: "get",
    path: "/audit",
    summary: "The audit log: management actions and job submissions, newest first",
    tags: adminTags,
    security: adminSecurity,
    request: { query: adminAuditQuery },
    responses: { ...okJson(auditPage, "One page of entries.", auditPageExample), 400: listingError, 401: adminUnauthorized },
  }),
  createAdminKey: createRoute({
    method: "post",
    path: "/keys",
    summary: "Create a named admin key (bootstrap token only)",
    tags: adminTags,
    security: adminSecurity,
    middleware: [requireBootstrap] as const,
    request: { body: jsonRequest(adminKeyCreate) },
    responses: { ...okJson(adminKeyView.extend({ key: z.string() }), "The key; `key` is shown once.", { ...adminKeyExample, key: ADMIN_KEY }), 400: commonErrors[400], 401: adminUnauthorized, 403: bootstrapOnly },
  }),
  listAdminKeys: createRoute({
    method: "get",
    path: "/keys",
    summary: "List the admin keys (never the keys themselves)",
    tags: adminTags,
    security: adminSecurity,
    responses: { ...okJson(z.array(adminKeyView), "Every admin key, revoked ones included.", [adminKeyExample]), 401: adminUnauthorized },
  }),
  revokeAdminKey: createRoute({
    method: "delete",
    path: "/keys/{id}",
    summary: "Revoke an admin key (bootstrap token only); refused at once on every replica",
    tags: adminTags,
    security: adminSecurity,
    middleware: [requireBootstrap] as const,
    request: { params: idParam },
    responses: { ...okJson(z.object({ id: z.string(), revoked: z.literal(true) }), "Revoked.", { id: adminKeyExample.id, revoked: true }), 401: adminUnauthorized, 403: bootstrapOnly, 404: notFound("admin key") },
  }),
  tenantAudit: createRoute({
    method: "get",
    path: "/audit",
    summary: "The tenant's own audit entries: management actions and job submissions, newest first",
    tags: ["audit"],
    security: tenantSecurity,
    request: { query: tenantAuditQuery },
    responses: { ...okJson(auditPage, "One page of entries.", auditPageExample), 400: listingError, 401: commonErrors[401] },
  }),
};

/** A damaged cursor would otherwise restart the listing: a client would page for ever. */
function filterOf(q: z.output<typeof adminAuditQuery>): AuditFilter {
  if (q.cursor !== undefined && decodeAuditCursor(q.cursor) === undefined) throw badCursor();
  const f: AuditFilter = { limit: q.limit };
  if (q.tenantId !== undefined) f.tenantId = q.tenantId;
  if (q.endpointId !== undefined) f.endpointId = q.endpointId;
  if (q.action !== undefined) f.action = q.action;
  if (q.actor !== undefined) f.actor = q.actor;
  if (q.since !== undefined) f.since = q.since;
  if (q.until !== undefined) f.until = q.until;
  if (q.cursor !== undefined) f.cursor = q.cursor;
  return f;
}

/** `/admin/keys` and `/admin/audit`; mounted under `/admin`, behind app.ts' admin authentication. */
export function adminAccessRoutes(deps: ApiDeps): OpenAPIHono<AdminEnv> {
  const app = apiRouter<AdminEnv>();
  app.openapi(routes.adminAudit, async (c) => c.json(await deps.audit.list(filterOf(c.req.valid("query"))), 200));
  app.openapi(routes.createAdminKey, async (c) => c.json(await deps.adminKeys.create(c.req.valid("json").name, c.get("audit")), 200));
  app.openapi(routes.listAdminKeys, async (c) => c.json(await deps.adminKeys.list(), 200));
  app.openapi(routes.revokeAdminKey, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deps.adminKeys.revoke(id, c.get("audit")))) throw ApiError.notFound("admin key");
    return c.json({ id, revoked: true as const }, 200);
  });
  return app;
}

/** `/api/v1/audit`: the tenant's own entries only, whatever the query says. */
export function tenantAuditRoutes(deps: ApiDeps): OpenAPIHono<TenantEnv> {
  const app = apiRouter<TenantEnv>();
  app.openapi(routes.tenantAudit, async (c) => {
    const q = c.req.valid("query");
    return c.json(await deps.audit.list({ ...filterOf(q), tenantId: c.get("principal").tenantId }), 200);
  });
  return app;
}
