import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { ApiError } from "../api-error.ts";
import type { TenantEnv } from "../middleware/tenant-auth.ts";
import { balanceView } from "../services/ledger.ts";
import type { ApiDeps } from "../api-deps.ts";
import { apiRouter, commonErrors, notFound, okJson, tenantSecurity } from "./route-kit.ts";
import { balanceExample } from "./examples/billing-examples.ts";

const routes = {
  balance: createRoute({
    method: "get",
    path: "/billing/balance",
    summary: "The tenant's balance: credits minus charges, from its ledger",
    tags: ["billing"],
    security: tenantSecurity,
    responses: { ...okJson(balanceView, "Amounts in µ$ (1 USD = 1000000); balanceMicros = creditedMicros − chargedMicros.", balanceExample), 401: commonErrors[401], 404: notFound("tenant") },
  }),
};

/** The tenant's view of its money (`/api/v1/billing/...`); mounted under `/api/v1`, behind its tenant auth. */
export function billingRoutes(deps: ApiDeps): OpenAPIHono<TenantEnv> {
  const app = apiRouter<TenantEnv>();
  app.openapi(routes.balance, async (c) => {
    const balance = await deps.ledger.balance(c.get("principal").tenantId);
    // An authenticated key whose tenant is gone: nothing to show.
    if (!balance) throw ApiError.notFound("tenant");
    return c.json(balance, 200);
  });
  return app;
}
