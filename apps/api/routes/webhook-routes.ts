import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { resourceId } from "../../../core/contracts/safe-text.ts";
import { ApiError } from "../api-error.ts";
import type { TenantEnv } from "../middleware/tenant-auth.ts";
import { deliveryView, receiverHealthView } from "../services/webhook-deliveries.ts";
import type { ApiDeps } from "../api-deps.ts";
import { apiRouter, commonErrors, insufficientScope, notFound, okJson, tenantSecurity, withExample } from "./route-kit.ts";
import { ENDPOINT_ID, JOB_ID } from "./examples/example-ids.ts";
import { deliveryExample, receiverHealthExample, retriedDelivery, rotatedSecret } from "./examples/webhook-examples.ts";

const idParam = z.object({ id: resourceId });
const tags = ["webhooks"];
const errors = { 401: commonErrors[401], 404: commonErrors[404] };
const deliveryErrors = { ...errors, 404: notFound("webhook deliveries of this job") };
const deliveries = z.object({ items: z.array(deliveryView) });
const rotated = z
  .object({
    webhookSecret: z.string().describe("The new signing secret (`whsec_…`), shown once."),
    previousExpiresAt: z.string().describe("Until then the previous secret signs beside the new one (a second `v1,` signature)."),
  })
  .meta({ id: "WebhookSecretRotation" });

const routes = {
  list: createRoute({
    method: "get",
    path: "/jobs/{id}/deliveries",
    summary: "A job's webhook deliveries and every attempt",
    tags,
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(deliveries, "Oldest first; 404 when the job has no webhook delivery (yet) or is another tenant's.", { items: [deliveryExample] }), ...deliveryErrors },
  }),
  retry: createRoute({
    method: "post",
    path: "/jobs/{id}/deliveries/retry",
    summary: "Deliver a job's webhooks again, now, on a fresh retry schedule",
    tags,
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(deliveries, "The deliveries, pending again (same webhook-id).", { items: [retriedDelivery] }), ...deliveryErrors, 403: withExample(commonErrors[403], insufficientScope("run", "POST", `/api/v1/jobs/${JOB_ID}/deliveries/retry`)) },
  }),
  rotate: createRoute({
    method: "post",
    path: "/endpoints/{id}/webhook-secret/rotate",
    summary: "Replace the endpoint's webhook signing secret; the old one keeps signing for a grace period",
    tags,
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(rotated, "The new secret.", rotatedSecret), ...errors, 403: withExample(commonErrors[403], insufficientScope("read", "POST", `/api/v1/endpoints/${ENDPOINT_ID}/webhook-secret/rotate`)) },
  }),
  health: createRoute({
    method: "get",
    path: "/endpoints/{id}/webhooks",
    summary: "How the endpoint's webhook receivers fare: last success, failures in a row",
    tags,
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(receiverHealthView, "Counts over the deliveries on record.", receiverHealthExample), ...errors },
  }),
};

/** Webhook deliveries and signing secrets (`/api/v1/...`); mounted under `/api/v1`, behind its tenant auth. */
export function webhookRoutes(deps: ApiDeps): OpenAPIHono<TenantEnv> {
  const app = apiRouter<TenantEnv>();
  app.openapi(routes.list, async (c) => {
    const items = await deps.webhooks.forJob(c.get("principal").tenantId, c.req.valid("param").id);
    if (!items) throw ApiError.notFound("webhook deliveries of this job");
    return c.json({ items }, 200);
  });
  app.openapi(routes.retry, async (c) => {
    const items = await deps.webhooks.retry(c.get("principal").tenantId, c.req.valid("param").id, c.get("audit"));
    if (!items) throw ApiError.notFound("webhook deliveries of this job");
    return c.json({ items }, 200);
  });
  app.openapi(routes.rotate, async (c) => {
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, c.req.valid("param").id);
    if (!ep) throw ApiError.notFound("endpoint");
    const { secret, previousExpiresAt } = await deps.webhookSecrets.rotate(ep.id, deps.webhookSecretGraceMs, { by: c.get("audit"), tenantId: ep.tenantId });
    return c.json({ webhookSecret: secret, previousExpiresAt }, 200);
  });
  app.openapi(routes.health, async (c) => {
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, c.req.valid("param").id, { includeDeleted: true });
    if (!ep) throw ApiError.notFound("endpoint");
    return c.json(await deps.webhooks.receiverHealth(ep.id), 200);
  });
  return app;
}
