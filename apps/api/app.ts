import type { OpenAPIHono } from "@hono/zod-openapi";
import { HTTPException } from "hono/http-exception";
import { ApiError, apiErrorBody } from "./api-error.ts";
import { openAIErrorOf } from "./openai-error.ts";
import type { ApiDeps } from "./api-deps.ts";
import { isBackendUnavailable } from "./backend-unavailable.ts";
import { openAIErrorBody, openAIErrorType } from "../../core/contracts/openai-error.ts";
import { adminAuth, tenantAuth, type TenantEnv } from "./middleware/tenant-auth.ts";
import type { MiddlewareHandler } from "hono";
import { managementScope } from "../../core/policy/key-scopes.ts";
import { adminAccessRoutes, tenantAuditRoutes } from "./routes/audit-routes.ts";
import { jobRoutes } from "./routes/job-routes.ts";
import { managementRoutes } from "./routes/management-routes.ts";
import { adminRoutes } from "./routes/admin-routes.ts";
import { billingRoutes } from "./routes/billing-routes.ts";
import { reconcileRoutes, usageRoutes } from "./routes/usage-routes.ts";
import { webhookRoutes } from "./routes/webhook-routes.ts";
import { recordRoutes } from "./routes/record-routes.ts";
import { logRoutes } from "./routes/log-routes.ts";
import { docsRoutes } from "./routes/docs-routes.ts";
import { apiRouter, registerSecuritySchemes } from "./routes/route-kit.ts";
import { requestContext, type RequestEnv } from "./middleware/request-context.ts";

const isOpenAIPath = (path: string) => /^\/v2\/[^/]+\/openai\//.test(path);

/** The OpenAPI document's header; the paths come from the routes' own declarations. */
const DOCUMENT_INFO = {
  openapi: "3.1.0",
  info: {
    title: "Hearth API",
    version: "1",
    description: "RunPod-compatible job routes (`/v2/{ep}/...`), OpenAI-compatible routes (`/v2/{ep}/openai/v1/...`), management (`/api/v1`) and the operator's routes (`/admin`).",
  },
};

/** HTTP errors Hono raises itself (malformed JSON in a validated body, a wrong media type) and their codes. */
const HTTP_ERROR_CODES: Record<number, string> = { 400: "invalid_request", 413: "payload_too_large", 415: "unsupported_media_type" };
const httpErrorMessage = (err: HTTPException) => (err.status === 415 ? "send the body as JSON with Content-Type: application/json" : err.message);

/** The whole HTTP API as one Hono app; entry points only wire dependencies and serve it. */
export function createApp(deps: ApiDeps): OpenAPIHono<RequestEnv> {
  const app = apiRouter<RequestEnv>();
  registerSecuritySchemes(app);
  app.use("*", requestContext({ ...(deps.tracer && { tracer: deps.tracer }) }));
  const metrics = deps.metrics;
  if (metrics) {
    app.use("*", metrics.middleware());
    // Prometheus' text format; the admin token or an admin key as a bearer token (Prometheus' `authorization`), or open with HEARTH_METRICS_PUBLIC.
    const scrape: MiddlewareHandler = async (c) => {
      const { contentType, body } = await metrics.render();
      return c.body(body, 200, { "content-type": contentType });
    };
    if (deps.metricsPublic) app.get("/metrics", scrape);
    else app.get("/metrics", adminAuth({ adminToken: deps.adminToken, adminKeys: deps.adminKeys }), scrape);
  }

  app.get("/healthz", (c) => c.json({ ok: true }, 200));
  app.get("/readyz", async (c) => {
    const r = await deps.checkReady();
    return c.json({ ready: r.redis && r.postgres, ...r }, r.redis && r.postgres ? 200 : 503);
  });
  app.get("/openapi.json", (c) => c.json(app.getOpenAPI31Document(DOCUMENT_INFO), 200));
  // The interactive reference for that document, served from the bundled package (works offline).
  app.route("/docs", docsRoutes());

  // One admin authentication for every /admin route: the bootstrap token or a live admin key, which names the actor.
  app.use("/admin/*", adminAuth({ adminToken: deps.adminToken, adminKeys: deps.adminKeys }));
  app.route("/admin", adminRoutes(deps));
  app.route("/admin", reconcileRoutes(deps));
  app.route("/admin", adminAccessRoutes(deps));
  // Every /api/v1 route is the tenant's: one authentication for all of them; reading needs a `read` key, changing a `full` one.
  const v1 = apiRouter<TenantEnv>();
  v1.use("*", tenantAuth({ tenants: deps.tenants, scope: (c) => managementScope(c.req.method) }));
  v1.route("/", recordRoutes(deps));
  v1.route("/", managementRoutes(deps));
  v1.route("/", billingRoutes(deps));
  v1.route("/", usageRoutes(deps));
  v1.route("/", webhookRoutes(deps));
  v1.route("/", logRoutes(deps));
  v1.route("/", tenantAuditRoutes(deps));
  app.route("/api/v1", v1);
  app.route("/v2", jobRoutes(deps));

  app.notFound((c) => (isOpenAIPath(c.req.path) ? c.json(openAIErrorBody(`no such route: ${c.req.method} ${c.req.path}`, "invalid_request_error", "not_found"), 404) : c.json({ error: "no such route", code: "not_found" }, 404)));
  app.onError((err, c) => {
    // OpenAI clients read `error.message`: the same errors, in OpenAI's shape, on the OpenAI routes.
    if (isOpenAIPath(c.req.path)) {
      if (err instanceof ApiError) return c.json(openAIErrorOf(err), err.status, err.headers);
      if (err instanceof HTTPException) return c.json(openAIErrorBody(httpErrorMessage(err), openAIErrorType(err.status), HTTP_ERROR_CODES[err.status] ?? "http_error", null), err.status);
      if (isBackendUnavailable(err)) return c.json(openAIErrorBody("a backing store is unreachable; retry shortly", "server_error", "unavailable"), 503, { "Retry-After": "1" });
    }
    if (err instanceof ApiError) return c.json(apiErrorBody(err), err.status, err.headers);
    if (err instanceof HTTPException) return c.json({ error: httpErrorMessage(err), code: HTTP_ERROR_CODES[err.status] ?? "http_error" }, err.status);
    if (isBackendUnavailable(err)) {
      return c.json({ error: "a backing store (Redis or PostgreSQL) is unreachable; retry shortly", code: "unavailable" }, 503, { "Retry-After": "1" });
    }
    // The client went away, or its request timed out (an HTTP/2 stream reset), while its body was
    // being read: no fault of ours, and nobody will read this answer.
    const incoming = (c.env as { incoming?: { aborted?: boolean; destroyed?: boolean } } | undefined)?.incoming;
    if (err instanceof Error && err.name === "AbortError" && (c.req.raw.signal.aborted || incoming?.aborted === true || incoming?.destroyed === true)) {
      deps.log({ level: "info", msg: "request aborted by the client or its timeout", method: c.req.method, path: c.req.path, requestId: c.get("requestId") });
      return c.json({ error: "request aborted", code: "aborted" }, 400);
    }
    deps.log({ level: "error", msg: "internal error", method: c.req.method, path: c.req.path, requestId: c.get("requestId"), traceId: c.get("trace")?.traceId, error: String(err?.stack ?? err) });
    return c.json({ error: "internal error", code: "internal" }, 500);
  });
  return app;
}
