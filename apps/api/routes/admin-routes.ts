import { Hono } from "hono";
import { z } from "zod";
import { ApiError } from "../api-error.ts";
import { adminAuth } from "../middleware/tenant-auth.ts";
import { jsonBody } from "../validation.ts";
import type { ApiDeps } from "../api-deps.ts";

const tenantCreate = z.object({ name: z.string().min(1).max(191) });

/** The operator's routes (`/admin/...`, admin token): tenants, and the event log's state. */
export function adminRoutes(deps: ApiDeps): Hono {
  const app = new Hono();
  app.use("*", adminAuth({ adminToken: deps.adminToken }));

  app.post("/tenants", async (c) => {
    const body = await jsonBody(c, tenantCreate);
    return c.json(await deps.tenants.createTenant(body.name), 200);
  });

  app.get("/log", async (c) => c.json(await deps.logAdmin.status(), 200));
  app.post("/log/dead-letters/:id/retry", async (c) => {
    if (!(await deps.logAdmin.retry(c.req.param("id")))) throw ApiError.notFound("open dead letter");
    return c.json({ id: c.req.param("id"), state: "retrying" }, 200);
  });
  app.post("/log/dead-letters/:id/discard", async (c) => {
    if (!(await deps.logAdmin.discard(c.req.param("id")))) throw ApiError.notFound("open dead letter");
    return c.json({ id: c.req.param("id"), state: "discarded" }, 200);
  });
  return app;
}
