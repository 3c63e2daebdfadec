import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { ApiError } from "./api-error.ts";
import type { ApiDeps } from "./api-deps.ts";
import { isBackendUnavailable } from "./backend-unavailable.ts";
import { openAIErrorBody, openAIErrorType } from "../../core/contracts/openai-error.ts";
import { jobRoutes } from "./routes/job-routes.ts";
import { managementRoutes } from "./routes/management-routes.ts";
import { adminRoutes } from "./routes/admin-routes.ts";
import { recordRoutes } from "./routes/record-routes.ts";

const isOpenAIPath = (path: string) => /^\/v2\/[^/]+\/openai\//.test(path);

/** The whole HTTP API as one Hono app; entry points only wire dependencies and serve it. */
export function createApp(deps: ApiDeps): Hono {
  const app = new Hono();

  app.get("/healthz", (c) => c.json({ ok: true }, 200));
  app.get("/readyz", async (c) => {
    const r = await deps.checkReady();
    return c.json({ ready: r.redis && r.postgres, ...r }, r.redis && r.postgres ? 200 : 503);
  });

  app.route("/admin", adminRoutes(deps));
  app.route("/api/v1", recordRoutes(deps));
  app.route("/", managementRoutes(deps));
  app.route("/v2", jobRoutes(deps));

  app.notFound((c) => (isOpenAIPath(c.req.path) ? c.json(openAIErrorBody(`no such route: ${c.req.method} ${c.req.path}`, "invalid_request_error", "not_found"), 404) : c.json({ error: "no such route", code: "not_found" }, 404)));
  app.onError((err, c) => {
    // OpenAI clients read `error.message`: the same errors, in OpenAI's shape, on the OpenAI routes.
    if (isOpenAIPath(c.req.path)) {
      if (err instanceof ApiError) {
        const param = err.issues?.[0]?.path ?? null;
        return c.json(openAIErrorBody(err.message, openAIErrorType(err.status), err.code, param), err.status, err.headers);
      }
      if (isBackendUnavailable(err)) return c.json(openAIErrorBody("a backing store is unreachable; retry shortly", "server_error", "unavailable"), 503, { "Retry-After": "1" });
    }
    if (err instanceof ApiError) {
      const body: Record<string, unknown> = { error: err.message, code: err.code };
      if (err.issues) body.issues = err.issues;
      return c.json(body, err.status, err.headers);
    }
    if (err instanceof HTTPException) return c.json({ error: err.message, code: "http_error" }, err.status);
    if (isBackendUnavailable(err)) {
      return c.json({ error: "a backing store (Redis or PostgreSQL) is unreachable; retry shortly", code: "unavailable" }, 503, { "Retry-After": "1" });
    }
    console.error(JSON.stringify({ t: "api", level: "error", path: c.req.path, error: String(err?.stack ?? err) }));
    return c.json({ error: "internal error", code: "internal" }, 500);
  });
  return app;
}
