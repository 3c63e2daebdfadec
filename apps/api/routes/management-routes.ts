import { Hono } from "hono";
import { z } from "zod";
import { endpointCreate, endpointPatch } from "../../../core/contracts/endpoint.ts";
import { checkEngine } from "../services/engine-check.ts";
import type { ControlMessage } from "../../../core/queue/messages.ts";
import { ApiError } from "../api-error.ts";
import { tenantAuth, type TenantEnv } from "../middleware/tenant-auth.ts";
import { jsonBody } from "../validation.ts";
import type { ApiDeps } from "../api-deps.ts";

const keyCreate = z.object({ name: z.string().min(1).max(191).default("key") });

/** The tenant's `/api/v1/endpoints` and `/api/v1/keys`. */
export function managementRoutes(deps: ApiDeps): Hono<TenantEnv> {
  const app = new Hono<TenantEnv>();
  const announce = (msg: ControlMessage) => deps.redis.publish(deps.keys.apiChannel(), JSON.stringify(msg)).catch(() => {});

  const v1 = new Hono<TenantEnv>();
  v1.use("*", tenantAuth({ tenants: deps.tenants }));

  v1.post("/endpoints", async (c) => {
    const body = await jsonBody(c, endpointCreate);
    await checkEngine(body.engine, deps, "engine");
    return c.json(await deps.endpoints.create(c.get("principal").tenantId, body), 200);
  });
  v1.get("/endpoints", async (c) => c.json(await deps.endpoints.list(c.get("principal").tenantId), 200));
  v1.get("/endpoints/:id", async (c) => {
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, c.req.param("id"));
    if (!ep) throw ApiError.notFound("endpoint");
    return c.json(ep, 200);
  });
  v1.patch("/endpoints/:id", async (c) => {
    const tenantId = c.get("principal").tenantId;
    const patch = await jsonBody(c, endpointPatch);
    const current = await deps.endpoints.getOwned(tenantId, c.req.param("id"));
    if (!current) throw ApiError.notFound("endpoint");
    if (patch.engine) await checkEngine(patch.engine, deps, "engine");
    const min = patch.workersMin ?? current.workersMin;
    const max = patch.workersMax ?? current.workersMax;
    if (min > max) throw ApiError.badRequest("workersMin: must not exceed workersMax", [{ path: "workersMin", message: "must not exceed workersMax" }]);
    const updated = await deps.endpoints.update(tenantId, current.id, patch);
    if (!updated) throw ApiError.notFound("endpoint");
    void announce({ type: "invalidate-endpoint", endpointId: updated.id });
    deps.submitter.wake(updated.id, { force: true }); // new min/max take effect now, not at the next tick
    return c.json(updated, 200);
  });
  v1.delete("/endpoints/:id", async (c) => {
    const id = c.req.param("id");
    if (!(await deps.endpoints.softDelete(c.get("principal").tenantId, id))) throw ApiError.notFound("endpoint");
    void announce({ type: "invalidate-endpoint", endpointId: id });
    deps.submitter.wake(id, { force: true });
    return c.json({ id, deleted: true }, 200);
  });

  v1.post("/keys", async (c) => {
    const body = await jsonBody(c, keyCreate);
    return c.json(await deps.tenants.createKey(c.get("principal").tenantId, body.name), 200);
  });
  v1.get("/keys", async (c) => c.json(await deps.tenants.listKeys(c.get("principal").tenantId), 200));
  v1.delete("/keys/:id", async (c) => {
    const hash = await deps.tenants.revokeKey(c.get("principal").tenantId, c.req.param("id"));
    if (!hash) throw ApiError.notFound("key");
    void announce({ type: "invalidate-key", keyHash: hash });
    return c.json({ id: c.req.param("id"), revoked: true }, 200);
  });

  app.route("/api/v1", v1);
  return app;
}
