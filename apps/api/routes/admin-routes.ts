import { errorFields } from "../../../core/log/process-log.ts";
import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { billingMode, creditRequest, priceVersionUpdate } from "../../../core/contracts/billing.ts";
import { hasUnstorableChars, resourceId, safeText } from "../../../core/contracts/safe-text.ts";
import { grantsUpdate, limitsUpdate, tenantGrants, tenantLimits } from "../../../core/contracts/tenant-limits.ts";
import { defaultRatePreset, rateLimits } from "../../../core/contracts/rate-limits.ts";
import { ApiError } from "../api-error.ts";
import type { AdminEnv } from "../middleware/tenant-auth.ts";
import { decodeLedgerCursor, ledgerEntryView } from "../services/ledger.ts";
import type { ApiDeps } from "../api-deps.ts";
import { adminSecurity, adminUnauthorized, apiRouter, badCursor, commonErrors, errorResponse, idempotencyKey, jsonRequest, notFound, okJson, optionalQuery, withExample } from "./route-kit.ts";
import { adminErrors, createdTenant, creditEntry, deadLetterExample, ledgerPage, limitsViewExample, logStatusExample, priceTableExample } from "./examples/admin-examples.ts";

const tenantCreate = z.object({
  name: safeText(191),
  billingMode: billingMode.optional().describe("How the tenant pays; default HEARTH_BILLING_MODE (`enforce`: it needs credit before its first job)."),
});
const billingModeUpdate = z.strictObject({ billingMode }).meta({ id: "BillingModeUpdate" });
const billingModeView = z.object({ tenantId: z.string(), billingMode });
export const logStatus = z.object({
  consumers: z.array(z.object({ name: z.string(), lagEntries: z.number(), lagMs: z.number(), endpoints: z.number() })),
  deadLetters: z.object({ open: z.number(), items: z.array(z.unknown()) }),
});
const tenantParam = z.object({ id: resourceId });
export const limitsView = z
  .object({
    tenantId: z.string(),
    limits: tenantLimits,
    overrides: tenantLimits.partial(),
    rates: rateLimits.describe("The tenant's own rate limits; empty: `rateDefault` applies."),
    rateDefault: defaultRatePreset.describe("HEARTH_DEFAULT_RATE_LIMITS: `runpod` (RunPod's per-route table) or `none` (unlimited) for tenants without rates of their own."),
  })
  .meta({ id: "TenantLimits" });
const grantsView = z.object({ tenantId: z.string(), grants: tenantGrants });
const deadLetterParams = z.object({ id: z.string().min(1).max(512).refine((s) => !hasUnstorableChars(s), "is not a dead letter id") });
const deadLetterState = <S extends string>(state: S) => z.object({ id: z.string(), state: z.literal(state) });
export const priceTableView = z
  .object({
    versions: z.array(
      z.object({
        effectiveFrom: z.string(),
        prices: z.record(z.string(), z.number()),
        adds: z.array(z.string()).optional(),
        source: z.enum(["default", "stored"]).describe("`default`: the prices every install starts with; `stored`: added with PUT /admin/prices."),
      }),
    ),
  })
  .meta({ id: "PriceTable" });
const creditHeaders = z.object({
  "idempotency-key": idempotencyKey.optional().describe("A repeat with the same key for the same tenant returns the first credit's entry and credits nothing (no expiry)."),
});
const ledgerQuery = z.object({
  cursor: optionalQuery(z.string().max(512)).describe("`nextCursor` of the previous page."),
  limit: optionalQuery(z.coerce.number().int().min(1).max(500)).transform((n) => n ?? 50),
});

const errors = { 400: commonErrors[400], 401: adminUnauthorized, 404: notFound("tenant") };

const routes = {
  createTenant: createRoute({
    method: "post",
    path: "/tenants",
    summary: "Create a tenant and its first API key",
    tags: ["admin"],
    security: adminSecurity,
    request: { body: jsonRequest(tenantCreate) },
    responses: {
      ...okJson(z.object({ id: z.string(), name: z.string(), apiKey: z.string(), billingMode }), "The tenant and its first API key (`apiKey` is shown once).", createdTenant),
      400: errors[400],
      401: errors[401],
    },
  }),
  setBillingMode: createRoute({
    method: "put",
    path: "/tenants/{id}/billing",
    summary: "Set how a tenant pays: enforce (needs credit; 402 at zero balance) or meter (recorded, never refused)",
    tags: ["billing"],
    security: adminSecurity,
    request: { params: tenantParam, body: jsonRequest(billingModeUpdate) },
    responses: { ...okJson(billingModeView, "The mode after the change; API replicas apply it within 5 s.", { tenantId: createdTenant.id, billingMode: "meter" }), ...errors },
  }),
  getLimits: createRoute({
    method: "get",
    path: "/tenants/{id}/limits",
    summary: "A tenant's quotas: in force, and the admin's overrides of the defaults",
    tags: ["admin"],
    security: adminSecurity,
    request: { params: tenantParam },
    responses: { ...okJson(limitsView, "The quotas.", limitsViewExample), 401: errors[401], 404: errors[404] },
  }),
  setLimits: createRoute({
    method: "put",
    path: "/tenants/{id}/limits",
    summary: "Set a tenant's quotas (null returns one to the default)",
    tags: ["admin"],
    security: adminSecurity,
    request: { params: tenantParam, body: jsonRequest(limitsUpdate) },
    responses: { ...okJson(limitsView, "The quotas after the change; API replicas apply it within 5 s.", limitsViewExample), ...errors },
  }),
  setGrants: createRoute({
    method: "put",
    path: "/tenants/{id}/grants",
    summary: "Grant or withdraw rights beyond the defaults (remoteCode: engine flags that run model code or read paths)",
    tags: ["admin"],
    security: adminSecurity,
    request: { params: tenantParam, body: jsonRequest(grantsUpdate) },
    responses: { ...okJson(grantsView, "The tenant's grants after the change.", { tenantId: createdTenant.id, grants: { remoteCode: true } }), ...errors },
  }),
  getPrices: createRoute({
    method: "get",
    path: "/prices",
    summary: "The price table in force: µ$ per second by GPU type, in versions",
    tags: ["billing"],
    security: adminSecurity,
    responses: { ...okJson(priceTableView, "Every version, oldest first; a type keeps its price until a later version sets another.", priceTableExample), 401: errors[401] },
  }),
  putPrices: createRoute({
    method: "put",
    path: "/prices",
    summary: "Add a price version (never before now: prices do not change the past)",
    tags: ["billing"],
    security: adminSecurity,
    request: { body: jsonRequest(priceVersionUpdate) },
    responses: {
      ...okJson(priceTableView, "The table with the new version.", priceTableExample),
      400: errorResponse("Naming the field: effectiveFrom in the past or equal to a version's, a price that is negative or not an integer, a GPU type neither known nor in adds.", adminErrors.pricesInPast),
      401: errors[401],
    },
  }),
  credit: createRoute({
    method: "post",
    path: "/tenants/{id}/credits",
    summary: "Credit a tenant's balance",
    tags: ["billing"],
    security: adminSecurity,
    request: { params: tenantParam, headers: creditHeaders, body: jsonRequest(creditRequest) },
    responses: {
      ...okJson(ledgerEntryView, "The credit's ledger entry (for a repeated Idempotency-Key, the first one, with the header Idempotent-Replayed: true).", creditEntry),
      ...errors,
    },
  }),
  ledger: createRoute({
    method: "get",
    path: "/tenants/{id}/ledger",
    summary: "A tenant's ledger entries, newest first",
    tags: ["billing"],
    security: adminSecurity,
    request: { params: tenantParam, query: ledgerQuery },
    responses: { ...okJson(z.object({ items: z.array(ledgerEntryView), nextCursor: z.string().nullable() }), "One page of entries.", ledgerPage), ...errors, 400: withExample(errors[400], badCursor()) },
  }),
  logStatus: createRoute({
    method: "get",
    path: "/log",
    summary: "The event log's consumers, their lag and open dead letters",
    tags: ["admin"],
    security: adminSecurity,
    responses: { ...okJson(logStatus, "Per consumer its lag; the open dead letters.", logStatusExample), 401: errors[401] },
  }),
  retryDeadLetter: createRoute({
    method: "post",
    path: "/log/dead-letters/{id}/retry",
    summary: "Apply a dead letter again on the consumer's next round",
    tags: ["admin"],
    security: adminSecurity,
    request: { params: deadLetterParams },
    responses: { ...okJson(deadLetterState("retrying"), "Queued for another try.", { ...deadLetterExample, state: "retrying" }), 401: errors[401], 404: notFound("open dead letter") },
  }),
  discardDeadLetter: createRoute({
    method: "post",
    path: "/log/dead-letters/{id}/discard",
    summary: "Give up on a dead letter",
    tags: ["admin"],
    security: adminSecurity,
    request: { params: deadLetterParams },
    responses: { ...okJson(deadLetterState("discarded"), "Set aside for good.", { ...deadLetterExample, state: "discarded" }), 401: errors[401], 404: notFound("open dead letter") },
  }),
};

/**
 * The operator's routes (`/admin/...`, behind app.ts' admin authentication): tenants, their quotas,
 * grants and money, prices, and the event log's state. Every change is audited with its actor.
 */
export function adminRoutes(deps: ApiDeps): OpenAPIHono<AdminEnv> {
  const app = apiRouter<AdminEnv>();

  app.openapi(routes.createTenant, async (c) => {
    const body = c.req.valid("json");
    const tenant = await deps.tenants.createTenant(body.name, body.billingMode ?? deps.billingMode, c.get("audit"));
    // Its (zero) balance in the cache now, so that its first job is judged without reading Postgres.
    await refreshBalance(deps, tenant.id);
    return c.json(tenant, 200);
  });
  app.openapi(routes.setBillingMode, async (c) => {
    const { id } = c.req.valid("param");
    const mode = await deps.policy.setBillingMode(id, c.req.valid("json").billingMode, c.get("audit"));
    if (!mode) throw ApiError.notFound("tenant");
    await refreshBalance(deps, id);
    return c.json({ tenantId: id, billingMode: mode }, 200);
  });
  app.openapi(routes.getLimits, async (c) => {
    const { id } = c.req.valid("param");
    const policy = await deps.policy.policy(id);
    if (!policy) throw ApiError.notFound("tenant");
    return c.json({ tenantId: id, limits: policy.limits, overrides: policy.overrides, rates: policy.rates, rateDefault: deps.rateLimiter.defaultPreset }, 200);
  });
  app.openapi(routes.setLimits, async (c) => {
    const { id } = c.req.valid("param");
    const r = await deps.policy.setLimits(id, c.req.valid("json"), c.get("audit"));
    if (!r) throw ApiError.notFound("tenant");
    return c.json({ tenantId: id, ...r, rateDefault: deps.rateLimiter.defaultPreset }, 200);
  });
  app.openapi(routes.setGrants, async (c) => {
    const { id } = c.req.valid("param");
    const grants = await deps.policy.setGrants(id, c.req.valid("json"), c.get("audit"));
    if (!grants) throw ApiError.notFound("tenant");
    return c.json({ tenantId: id, grants }, 200);
  });
  app.openapi(routes.getPrices, async (c) => c.json({ versions: await deps.prices.view() }, 200));
  app.openapi(routes.putPrices, async (c) => {
    const { effectiveFrom, prices, adds } = c.req.valid("json");
    // "Not before now" on the log's clock, which dates the sessions these prices will bill.
    const versions = await deps.prices.addVersion({ effectiveFrom: Date.parse(effectiveFrom), prices, ...(adds !== undefined && { adds }) }, deps.logNow, c.get("audit"));
    return c.json({ versions }, 200);
  });
  app.openapi(routes.credit, async (c) => {
    const { id } = c.req.valid("param");
    const r = await deps.ledger.credit(id, c.req.valid("json"), c.get("audit"), c.req.valid("header")["idempotency-key"]);
    if (!r) throw ApiError.notFound("tenant");
    await refreshBalance(deps, id);
    return c.json(r.entry, 200, r.replayed ? { "Idempotent-Replayed": "true" } : {});
  });
  app.openapi(routes.ledger, async (c) => {
    const { id } = c.req.valid("param");
    const q = c.req.valid("query");
    // A damaged cursor would otherwise restart the listing: a client would page for ever.
    if (q.cursor !== undefined && !decodeLedgerCursor(q.cursor)) throw badCursor();
    const page = await deps.ledger.list(id, { limit: q.limit, ...(q.cursor !== undefined && { cursor: q.cursor }) });
    if (!page) throw ApiError.notFound("tenant");
    return c.json(page, 200);
  });
  app.openapi(routes.logStatus, async (c) => c.json(await deps.logAdmin.status(), 200));
  app.openapi(routes.retryDeadLetter, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deps.logAdmin.retry(id, c.get("audit")))) throw ApiError.notFound("open dead letter");
    return c.json({ id, state: "retrying" as const }, 200);
  });
  app.openapi(routes.discardDeadLetter, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deps.logAdmin.discard(id, c.get("audit")))) throw ApiError.notFound("open dead letter");
    return c.json({ id, state: "discarded" as const }, 200);
  });
  return app;
}

/**
 * Rebuilds the tenant's cached balance after its money or mode changed, so that service resumes at
 * once. The change itself is committed: a failure here is logged, and the control plane's periodic
 * rebuild repairs the cache.
 */
async function refreshBalance(deps: ApiDeps, tenantId: string): Promise<void> {
  try {
    await deps.balances.rebuild([tenantId]);
  } catch (err) {
    deps.log({ level: "warn", msg: "balance cache rebuild failed", tenantId, ...errorFields(err) });
  }
  deps.billing.forget(tenantId);
}
