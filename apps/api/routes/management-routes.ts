import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { endpointCreate, endpointPatch } from "../../../core/contracts/endpoint.ts";
import { guardrails } from "../../../core/contracts/guardrails.ts";
import { checkGuardrails } from "../services/guardrail-check.ts";
import { resourceId, safeText } from "../../../core/contracts/safe-text.ts";
import { keyScope } from "../../../core/contracts/key-scope.ts";
import { applyRateUpdate, rateLimits, rateLimitsUpdate, ratesInForce, ROUTE_CLASSES, type RateLimits, type RouteClass } from "../../../core/contracts/rate-limits.ts";
import { tenantGrants, tenantLimits } from "../../../core/contracts/tenant-limits.ts";
import { ApiError } from "../api-error.ts";
import type { TenantEnv } from "../middleware/tenant-auth.ts";
import { checkEngine } from "../services/engine-check.ts";
import type { ApiDeps } from "../api-deps.ts";
import { apiRouter, commonErrors, errorResponse, fieldError, jsonRequest, notFound, okJson, tenantSecurity, withExample } from "./route-kit.ts";
import { createdEndpoint, createdKey, endpointDetail, endpointExample, keyExample, limitsExample, managementErrors, resetEndpoint } from "./examples/endpoint-examples.ts";
import { jobWaitReason } from "../../../core/policy/wait-reason.ts";
import { isOpen } from "../../../core/policy/start-breaker.ts";
import { readCapacity } from "../services/endpoint-health.ts";
import { breakerView, readBreaker } from "../services/wait-reasons.ts";

const keyRates = rateLimitsUpdate.strict().meta({ id: "KeyRateLimitsUpdate" });
const keyCreate = z.object({
  name: safeText(191).default("key"),
  rateLimits: rateLimitsUpdate
    .strict()
    .optional()
    .describe("The key's own rate limits (requestsPerSecond, burst, tokensPerMinute), applied under the tenant's: a request must pass both. Absent: only the tenant's apply."),
  scope: keyScope.default("full").describe("`read`: statuses, streams, health and listings; `run`: also submitting and cancelling jobs; `full` (default): also management."),
});
const idParam = z.object({ id: resourceId });

/** An endpoint as the API returns it; the engine is described by `engine` in the create body. */
export const endpointView = z
  .object({
    id: z.string(),
    tenantId: z.string(),
    name: z.string(),
    engine: z.looseObject({ kind: z.string() }),
    gpuTypeIds: z.array(z.string()),
    workersMin: z.number(),
    workersMax: z.number(),
    idleTimeout: z.number(),
    scalerType: z.enum(["QUEUE_DELAY", "REQUEST_COUNT"]),
    scalerValue: z.number(),
    executionTimeoutMs: z.number(),
    flashboot: z.boolean(),
    maxFailedStarts: z.number(),
    workersStandby: z.number(),
    guardrails: guardrails.optional(),
    createdAt: z.string(),
    updatedAt: z.string(),
    /**
     * On `GET /endpoints/{id}`: why its workers wait, as `/health` says (`billing`: zero balance or
     * the spend per hour; `crash_loop`: its start breaker is open).
     */
    waitReason: jobWaitReason.optional(),
    /** On `GET /endpoints/{id}`: its start breaker (`maxFailedStarts` failed starts in a row open it; a PATCH or `/reset` closes it). */
    startBreaker: z.object({ open: z.boolean(), failedStarts: z.number(), lastError: z.string().nullable(), openedAt: z.string().nullable() }).optional(),
  })
  .meta({ id: "Endpoint" });
export const keyView = z.object({ id: z.string(), name: z.string(), prefix: z.string(), scope: keyScope, rateLimits, createdAt: z.string(), revokedAt: z.string().nullable() }).meta({ id: "ApiKey" });
const ratesView = z
  .object({
    source: z.enum(["tenant", "runpod", "none"]).describe("`tenant`: the tenant's own; `runpod`: the operator's default, RunPod's per-route table (HEARTH_DEFAULT_RATE_LIMITS); `none`: unlimited."),
    routes: z.record(z.enum(ROUTE_CLASSES), rateLimits).describe("The limits in force per class of job route (`openai`: every /openai/v1 route); `{}` is unlimited."),
    key: rateLimits.describe("The presenting API key's own limits, applied under the tenant's."),
  })
  .meta({ id: "RatesInForce" });
export const limitsOverview = z.object({ limits: tenantLimits, rates: ratesView, usage: z.object({ endpoints: z.number(), workersMin: z.number() }), grants: tenantGrants }).meta({ id: "Limits" });

const tags = ["endpoints"];
const keyTags = ["keys"];
const errors = { 400: commonErrors[400], 401: commonErrors[401], 404: commonErrors[404] };
const keyErrors = { ...errors, 404: notFound("key") };

const quotaError = errorResponse(
  "A quota (maxEndpoints, maxWorkers, maxWorkersMin) would be passed: `quota_exceeded`, naming it and its value; or the key is not `full`: `insufficient_scope`.",
  managementErrors.quota,
);
const scopeError = { 403: commonErrors[403] };
const keyScopeError = { 403: withExample(commonErrors[403], managementErrors.keyScope) };

const routes = {
  createEndpoint: createRoute({
    method: "post",
    path: "/endpoints",
    summary: "Create an endpoint",
    tags,
    security: tenantSecurity,
    request: { body: jsonRequest(endpointCreate) },
    responses: {
      ...okJson(endpointView.extend({ webhookSecret: z.string().describe("The endpoint's webhook signing secret (`whsec_…`), shown once.") }), "The endpoint as stored.", createdEndpoint),
      400: errors[400],
      401: errors[401],
      403: quotaError,
    },
  }),
  listEndpoints: createRoute({
    method: "get",
    path: "/endpoints",
    summary: "List the tenant's endpoints",
    tags,
    security: tenantSecurity,
    responses: { ...okJson(z.array(endpointView), "The tenant's endpoints.", [endpointExample]), 401: errors[401] },
  }),
  getEndpoint: createRoute({
    method: "get",
    path: "/endpoints/{id}",
    summary: "Read one endpoint",
    tags,
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(endpointView, "The endpoint.", endpointDetail), ...errors },
  }),
  patchEndpoint: createRoute({
    method: "patch",
    path: "/endpoints/{id}",
    summary: "Change an endpoint's settings or engine",
    tags,
    security: tenantSecurity,
    request: { params: idParam, body: jsonRequest(endpointPatch) },
    responses: { ...okJson(endpointView, "The endpoint after the change.", endpointExample), ...errors, 400: withExample(errors[400], managementErrors.workersMin), 403: quotaError },
  }),
  resetEndpoint: createRoute({
    method: "post",
    path: "/endpoints/{id}/reset",
    summary: "Close the endpoint's start breaker: the scheduler starts its workers again",
    description: "After `maxFailedStarts` failed worker starts in a row the breaker opens: queued jobs fail with the last start error and no worker starts. A PATCH of the endpoint closes it too.",
    tags,
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(endpointView, "The endpoint, its breaker closed.", resetEndpoint), ...errors, ...scopeError },
  }),
  deleteEndpoint: createRoute({
    method: "delete",
    path: "/endpoints/{id}",
    summary: "Delete an endpoint (its workers drain and stop)",
    tags,
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(z.object({ id: z.string(), deleted: z.literal(true) }), "Deleted.", { id: endpointExample.id, deleted: true }), ...errors, ...scopeError },
  }),
  limits: createRoute({
    method: "get",
    path: "/limits",
    summary: "The tenant's quotas, what it uses of them, and its grants",
    tags: ["limits"],
    security: tenantSecurity,
    responses: {
      ...okJson(
        limitsOverview,
        "Counts past a quota are refused with 403 quota_exceeded, a full queue with 429, an oversize input with 413, a request past a rate limit with 429 rate_limit_exceeded.",
        limitsExample,
      ),
      401: errors[401],
    },
  }),
  createKey: createRoute({
    method: "post",
    path: "/keys",
    summary: "Create an API key",
    tags: keyTags,
    security: tenantSecurity,
    request: { body: jsonRequest(keyCreate, { required: false }) },
    responses: { ...okJson(keyView.extend({ key: z.string() }), "The key; `key` is shown once.", createdKey), 400: errors[400], 401: errors[401], ...keyScopeError },
  }),
  listKeys: createRoute({
    method: "get",
    path: "/keys",
    summary: "List the tenant's API keys (never the keys themselves)",
    tags: keyTags,
    security: tenantSecurity,
    responses: { ...okJson(z.array(keyView), "The tenant's keys.", [keyExample]), 401: errors[401] },
  }),
  setKeyRates: createRoute({
    method: "put",
    path: "/keys/{id}/limits",
    summary: "Set an API key's own rate limits (null removes one)",
    tags: keyTags,
    security: tenantSecurity,
    request: { params: idParam, body: jsonRequest(keyRates) },
    responses: { ...okJson(keyView, "The key after the change; every API replica applies it at once (or within the key cache's 60 s).", keyExample), ...keyErrors, ...keyScopeError },
  }),
  revokeKey: createRoute({
    method: "delete",
    path: "/keys/{id}",
    summary: "Revoke an API key",
    tags: keyTags,
    security: tenantSecurity,
    request: { params: idParam },
    responses: { ...okJson(z.object({ id: z.string(), revoked: z.literal(true) }), "Revoked on every API replica within the key cache's TTL.", { id: keyExample.id, revoked: true }), ...keyErrors, ...keyScopeError },
  }),
};

/** The tenant's `/api/v1/endpoints`, `/api/v1/keys` and `/api/v1/limits`; mounted under `/api/v1`, behind its tenant auth. */
export function managementRoutes(deps: ApiDeps): OpenAPIHono<TenantEnv> {
  const v1 = apiRouter<TenantEnv>();

  v1.openapi(routes.createEndpoint, async (c) => {
    const body = c.req.valid("json");
    const tenantId = c.get("principal").tenantId;
    await checkEngine(body.engine, deps, "engine");
    if (body.guardrails) await checkGuardrails(body.guardrails, deps.egress, "guardrails");
    await deps.prices.checkGpuTypes(body.gpuTypeIds, "gpuTypeIds");
    await deps.policy.checkGrants(tenantId, body.engine, "engine");
    await deps.policy.checkEndpoint(tenantId, body);
    const ep = await deps.endpoints.create(tenantId, body, c.get("audit"));
    // Shown once: the tenant verifies its webhooks with it (rotate for a new one).
    const webhookSecret = await deps.webhookSecrets.create(ep.id);
    return c.json({ ...ep, webhookSecret }, 200);
  });
  v1.openapi(routes.listEndpoints, async (c) => c.json(await deps.endpoints.list(c.get("principal").tenantId), 200));
  v1.openapi(routes.getEndpoint, async (c) => {
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, c.req.valid("param").id);
    if (!ep) throw ApiError.notFound("endpoint");
    const [held, breaker] = await Promise.all([readCapacity(deps.redis, deps.keys, ep.id), readBreaker(deps.redis, deps.keys, ep.id, Date.parse(ep.updatedAt))]);
    const reason = isOpen(breaker) ? ("crash_loop" as const) : held?.waitReason;
    return c.json({ ...ep, ...(reason && { waitReason: reason }), startBreaker: breakerView(breaker) }, 200);
  });
  v1.openapi(routes.resetEndpoint, async (c) => {
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, c.req.valid("param").id);
    if (!ep) throw ApiError.notFound("endpoint");
    const before = await readBreaker(deps.redis, deps.keys, ep.id, Date.parse(ep.updatedAt));
    await deps.redis.del(deps.keys.startBreaker(ep.id));
    await deps.endpoints.recordReset(c.get("principal").tenantId, ep.id, c.get("audit"), { wasOpen: isOpen(before), failedStarts: before.failedStarts });
    deps.submitter.wake(ep.id, { force: true }); // its queue may hold jobs waiting for a worker: start one now
    const breaker = await readBreaker(deps.redis, deps.keys, ep.id, Date.parse(ep.updatedAt));
    return c.json({ ...ep, startBreaker: breakerView(breaker) }, 200);
  });
  v1.openapi(routes.patchEndpoint, async (c) => {
    const tenantId = c.get("principal").tenantId;
    const patch = c.req.valid("json");
    const current = await deps.endpoints.getOwned(tenantId, c.req.valid("param").id);
    if (!current) throw ApiError.notFound("endpoint");
    if (patch.engine) {
      await checkEngine(patch.engine, deps, "engine");
      await deps.policy.checkGrants(tenantId, patch.engine, "engine");
    }
    if (patch.guardrails) await checkGuardrails(patch.guardrails, deps.egress, "guardrails");
    if (patch.gpuTypeIds) await deps.prices.checkGpuTypes(patch.gpuTypeIds, "gpuTypeIds");
    const min = patch.workersMin ?? current.workersMin;
    const max = patch.workersMax ?? current.workersMax;
    if (min > max) throw fieldError("workersMin", "must not exceed workersMax");
    await deps.policy.checkEndpoint(tenantId, { workersMin: min, workersMax: max }, current.id);
    const updated = await deps.endpoints.update(tenantId, current.id, patch, c.get("audit"));
    if (!updated) throw ApiError.notFound("endpoint");
    // A changed endpoint gets a closed start breaker (the scheduler also reads a breaker of an older revision as closed).
    await deps.redis.del(deps.keys.startBreaker(updated.id));
    void deps.invalidations.announce({ type: "invalidate-endpoint", endpointId: updated.id });
    deps.submitter.wake(updated.id, { force: true }); // new min/max take effect now, not at the next tick
    return c.json(updated, 200);
  });
  v1.openapi(routes.deleteEndpoint, async (c) => {
    const { id } = c.req.valid("param");
    if (!(await deps.endpoints.softDelete(c.get("principal").tenantId, id, c.get("audit")))) throw ApiError.notFound("endpoint");
    void deps.invalidations.announce({ type: "invalidate-endpoint", endpointId: id });
    deps.submitter.wake(id, { force: true });
    return c.json({ id, deleted: true as const }, 200);
  });

  v1.openapi(routes.limits, async (c) => {
    const tenantId = c.get("principal").tenantId;
    const [policy, usage] = await Promise.all([deps.policy.policy(tenantId), deps.policy.usage(tenantId)]);
    const own = policy?.rates ?? {};
    const routes = Object.fromEntries(ROUTE_CLASSES.map((rc) => [rc, ratesInForce(own, deps.rateLimiter.defaultPreset, rc).rates])) as Record<RouteClass, RateLimits>;
    const rates = { source: ratesInForce(own, deps.rateLimiter.defaultPreset, "run").source, routes, key: c.get("principal").rates ?? {} };
    return c.json({ limits: policy?.limits ?? deps.policy.defaults, rates, usage, grants: policy?.grants ?? { remoteCode: false } }, 200);
  });

  v1.openapi(routes.createKey, async (c) => {
    // An empty body stands for `{}`: the default name.
    const body = keyCreate.parse(c.req.valid("json") ?? {});
    const rates = body.rateLimits ? applyRateUpdate({}, body.rateLimits) : {};
    return c.json(await deps.tenants.createKey(c.get("principal").tenantId, body.name, body.scope, c.get("audit"), rates), 200);
  });
  v1.openapi(routes.listKeys, async (c) => c.json(await deps.tenants.listKeys(c.get("principal").tenantId), 200));
  v1.openapi(routes.setKeyRates, async (c) => {
    const key = await deps.tenants.setKeyRates(c.get("principal").tenantId, c.req.valid("param").id, c.req.valid("json"), c.get("audit"));
    if (!key) throw ApiError.notFound("key");
    return c.json(key, 200);
  });
  v1.openapi(routes.revokeKey, async (c) => {
    const { id } = c.req.valid("param");
    const hash = await deps.tenants.revokeKey(c.get("principal").tenantId, id, c.get("audit"));
    if (!hash) throw ApiError.notFound("key");
    return c.json({ id, revoked: true as const }, 200);
  });

  return v1;
}
