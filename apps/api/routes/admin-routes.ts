import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { ApiError } from "../api-error.ts";
import { adminAuth } from "../middleware/tenant-auth.ts";
import type { ApiDeps } from "../api-deps.ts";
import { adminSecurity, apiRouter, commonErrors, jsonRequest, okJson } from "./route-kit.ts";

const tenantCreate = z.object({ name: z.string().min(1).max(191) });
const logStatus = z.object({
  consumers: z.array(z.object({ name: z.string(), lagEntries: z.number(), lagMs: z.number(), endpoints: z.number() })),
  deadLetters: z.object({ open: z.number(), items: z.array(z.unknown()) }),
});
const deadLetterParams = z.object({ id: z.string().min(1).max(512) });
const deadLetterState = <S extends string>(state: S) => z.object({ id: z.string(), state: z.literal(state) });

const routes = {
  createTenant: createRoute({
    method: "post",
    path: "/tenants",
    summary: "Create a tenant and its first API key",
    tags: ["admin"],
    security: adminSecurity,
    request: { body: jsonRequest(tenantCreate) },
    responses: { ...okJson(z.object({ id: z.string(), name: z.string(), apiKey: z.string() }), "The tenant and its first API key (`apiKey` is shown once)."), 400: commonErrors[400], 401: commonErrors[401] },
  }),
  logStatus: createRoute({
    method: "get",
    path: "/log",
    summary: "The event log's consumers, their lag and open dead letters",
    tags: ["admin"],
    security: adminSecurity,
    responses: { ...okJson(logStatus, "Per consumer its lag; the open dead letters."), 401: commonErrors[401] },
  }),
  retryDeadLetter: createRoute({
    method: "post",
    path: "/log/dead-letters/{id}/retry",
    summary: "Apply a dead letter again on the consumer's next round",
    tags: ["admin"],
    security: adminSecurity,
    request: { params: deadLetterParams },
    responses: { ...okJson(deadLetterState("retrying"), "Queued for another try."), 401: commonErrors[401], 404: commonErrors[404] },
  }),
  discardDeadLetter: createRoute({
    method: "post",
    path: "/log/dead-letters/{id}/discard",
    summary: "Give up on a dead letter",
    tags: ["admin"],
    security: adminSecurity,
    request: { params: deadLetterParams },
    responses: { ...okJson(deadLetterState("discarded"), "Set aside for good."), 401: commonErrors[401], 404: commonErrors[404] },
  }),
};

/** The operator's routes (`/admin/...`, admin token): tenants, and the event log's state. */
export function adminRoutes(deps: ApiDeps): OpenAPIHono {
  const app = apiRouter();
  app.use("*", adminAuth({ adminToken: deps.adminToken }));

  app.openapi(routes.createTenant, async (c) => c.json(await deps.tenants.createTenant(c.req.valid("json").name), 200));
  app.openapi(routes.logStatus, async (c) => c.json(await deps.logAdmin.status(), 200));
  app.openapi(routes.retryDeadLetter, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deps.logAdmin.retry(id))) throw ApiError.notFound("open dead letter");
    return c.json({ id, state: "retrying" as const }, 200);
  });
  app.openapi(routes.discardDeadLetter, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deps.logAdmin.discard(id))) throw ApiError.notFound("open dead letter");
    return c.json({ id, state: "discarded" as const }, 200);
  });
  return app;
}
