import { OpenAPIHono, type Hook, type RouteConfig } from "@hono/zod-openapi";
import type { Context, Env } from "hono";
import { z } from "zod";
import { ApiError, apiErrorBody, type IssueDetail } from "../api-error.ts";
import type { KeyScope } from "../../../core/contracts/key-scope.ts";
import { jobRouteScope, managementScope } from "../../../core/policy/key-scopes.ts";
import { ENDPOINT_ID } from "./examples/example-ids.ts";

/*
 * How every route is written: `createRoute({...})` declares its method, path, request (params,
 * query, headers, JSON body) and responses with zod schemas; `router.openapi(route, handler)`
 * validates the request against those schemas before the handler runs and registers the route in
 * the OpenAPI document served at `/openapi.json`. One schema, two uses: what is documented is what
 * is enforced.
 */

/** The body of every error answer outside the OpenAI routes (see `app.onError`). */
export const errorBody = z
  .object({
    error: z.string(),
    code: z.string(),
    issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: "Error" });

/**
 * An error answer for the document, its example the body `app.onError` makes of `err`: examples
 * are built from the errors the routes throw, so they cannot drift from what the API says.
 */
export const errorResponse = (description: string, err: ApiError) => ({
  description,
  content: { "application/json": { schema: errorBody, example: apiErrorBody(err) } },
});

/** The 400 of a request that fails its schemas: `invalid request: <path>: <message>; …`, each issue in `issues`. */
const invalidRequest = (issues: IssueDetail[]) => ApiError.badRequest(`invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`, issues);

/** That 400 for one field (the examples' ones). */
export const invalidField = (path: string, message: string) => invalidRequest([{ path, message }]);

/** A 400 a handler raises about one field (`<path>: <message>`), past what the schemas check. */
export const fieldError = (path: string, message: string) => ApiError.badRequest(`${path}: ${message}`, [{ path, message }]);

/** The 400 of a listing given a `cursor` it did not return: a damaged cursor would otherwise restart the listing. */
export const badCursor = () => fieldError("cursor", "not a cursor this API returned");

/**
 * The 403 `tenantAuth` raises when a key of scope `has` calls `method path`; the scope the request
 * needs comes from core/policy/key-scopes.ts, as the middleware's does.
 */
export function insufficientScope(has: KeyScope, method: string, path: string): ApiError {
  const needs = path.startsWith("/v2/") ? jobRouteScope(method, path) : managementScope(method);
  return new ApiError(403, "insufficient_scope", `this API key's scope is ${has}; ${method} ${path} needs a ${needs} key`);
}

const NOT_FOUND = "No such resource for this tenant (another tenant's ids are indistinguishable from missing ones).";

/** The error answers most routes share, for the document; `app.onError` produces them. */
export const commonErrors = {
  400: errorResponse("The request is malformed; `issues` names each offending field.", invalidField("name", "Invalid input: expected string, received undefined")),
  401: errorResponse("No API key, or an unknown or revoked one.", new ApiError(401, "unauthorized", "invalid API key")),
  403: errorResponse(
    "The API key's scope does not reach this route (`insufficient_scope`): `read` < `run` (jobs) < `full` (management).",
    insufficientScope("read", "DELETE", `/api/v1/endpoints/${ENDPOINT_ID}`),
  ),
  404: errorResponse(NOT_FOUND, ApiError.notFound("endpoint")),
} as const;

/** A declared error answer with the example of another error of that status (a route's own 400, its own 404's subject). */
export const withExample = (response: { description: string }, err: ApiError) => errorResponse(response.description, err);

/** A 404 whose example names what the route looks up (`job not found`, `tenant not found`). */
export const notFound = (what: string) => errorResponse(NOT_FOUND, ApiError.notFound(what));

/** The 401 of the operator's routes (app.ts' admin authentication). */
export const adminUnauthorized = errorResponse("No admin token, or an unknown or revoked admin key.", new ApiError(401, "unauthorized", "admin token or admin key required"));

/** An `Idempotency-Key` header's value: printable ASCII without spaces, at most 255 characters (as Stripe takes it). */
export const idempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[\x21-\x7e]+$/, "must be 1-255 printable ASCII characters without spaces");

/** An optional query parameter; an empty value (`?status=`) counts as absent, as browsers and curl users send it. */
export const optionalQuery = <S extends z.ZodType>(s: S) => z.preprocess((v) => (v === "" ? undefined : v), s.optional());

/** A JSON request body; `required: false` lets an empty body stand for `{}`. */
export function jsonRequest<S extends z.ZodType>(schema: S, options: { required?: boolean; description?: string } = {}) {
  return {
    required: options.required ?? true,
    ...(options.description !== undefined && { description: options.description }),
    content: { "application/json": { schema } },
  };
}

/**
 * A 200 with a JSON body and its example, typed by the schema (openapi-document.test.ts also checks
 * that the schema accepts it unchanged); the example is published in `/openapi.json`.
 */
export function okJson<S extends z.ZodType>(schema: S, description: string, example: z.input<S>) {
  return { 200: { description, content: { "application/json": { schema, example } } } };
}

/** Where the document says a request failed validation: headers are named as such, the rest by field. */
function issuePath(target: string, path: PropertyKey[]): string {
  const field = path.map(String).join(".");
  if (target === "header") return `headers.${field}`;
  return field || "(body)";
}

/**
 * Turns a failed validation into the API's 400 naming every offending path; a path id that fails
 * its schema names something that cannot exist, so it is the same 404 as a missing one.
 */
const throwOnInvalid: Hook<unknown, Env, string, unknown> = (result) => {
  if (result.success) return;
  invalid((result as { target?: string }).target ?? "json", result.error);
};

function invalid(target: string, error: z.ZodError): never {
  if (target === "param") throw ApiError.notFound("resource");
  throw invalidRequest(error.issues.map((i) => ({ path: issuePath(target, i.path), message: i.message })));
}

const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;

/** The validated parts of a request served by `hotRoute`. */
export interface HotInput<B extends z.ZodType, H extends z.ZodObject, Q extends z.ZodType> {
  json: z.output<B>;
  header: z.output<H>;
  query: z.output<Q>;
}

/**
 * For the job path's hottest routes (`/run`, `/runsync`, the OpenAI completions): the same declaration, documented from
 * its schemas and validated by them, but checked in one middleware with synchronous zod parses,
 * reading only the headers the route declares. `app.openapi` runs one validator per request part
 * (each an async zod parse, the header one copying every header): measured, a quarter of `/run`'s
 * throughput. Errors are the same as `app.openapi`'s (400 naming fields, 404 for path ids, 415).
 */
export function hotRoute<E extends Env, B extends z.ZodType, H extends z.ZodObject = z.ZodObject<{}>, Q extends z.ZodType = z.ZodUndefined>(
  app: OpenAPIHono<E>,
  route: RouteConfig & { request: { params: z.ZodType; headers?: H; query?: Q; body: { content: { "application/json": { schema: B } } } } },
  handler: (c: Context<E>, input: HotInput<B, H, Q>) => Promise<Response>,
): void {
  app.openAPIRegistry.registerPath(route);
  const { params, query, body } = route.request;
  const headers = route.request.headers ?? (z.object({}) as unknown as H);
  const bodySchema = body.content["application/json"].schema;
  const headerNames = Object.keys(headers.shape);
  const middleware = (Array.isArray(route.middleware) ? route.middleware : route.middleware ? [route.middleware] : []) as never[];
  const serve = async (c: Context<E>) => {
    const p = params.safeParse(c.req.param());
    if (!p.success) invalid("param", p.error);
    const h = headers.safeParse(Object.fromEntries(headerNames.map((n) => [n, c.req.header(n)])));
    if (!h.success) invalid("header", h.error);
    const q = query?.safeParse(c.req.query());
    if (q && !q.success) invalid("query", q.error);
    const type = c.req.header("content-type");
    if (type === undefined || !JSON_MEDIA_TYPE.test(type.split(";")[0]!.trim())) {
      throw new ApiError(415, "unsupported_media_type", "send the body as JSON with Content-Type: application/json");
    }
    let value: unknown;
    try {
      value = JSON.parse(await c.req.text());
    } catch {
      throw ApiError.badRequest("Malformed JSON in request body");
    }
    const j = bodySchema.safeParse(value);
    if (!j.success) invalid("json", j.error);
    return handler(c, { json: j.data, header: h.data, query: q?.data as z.output<Q> });
  };
  (app.on as (method: string, path: string, ...handlers: unknown[]) => unknown)(route.method.toUpperCase(), route.path.replaceAll(/\/{(.+?)}/g, "/:$1"), ...middleware, serve);
}

/** A router whose routes are validated and documented from their zod schemas. */
export function apiRouter<E extends Env = Env>(): OpenAPIHono<E> {
  return new OpenAPIHono<E>({ defaultHook: throwOnInvalid as unknown as Hook<unknown, E, string, unknown> });
}

/** Bearer authentication as the document declares it: tenant API keys and the admin token. */
export const tenantSecurity = [{ apiKey: [] }];
export const adminSecurity = [{ adminToken: [] }];

/** Registers the security schemes the routes refer to. */
export function registerSecuritySchemes(app: OpenAPIHono<any>): void {
  app.openAPIRegistry.registerComponent("securitySchemes", "apiKey", {
    type: "http",
    scheme: "bearer",
    description: "A tenant API key (`POST /api/v1/keys`); RunPod clients may also send the raw key without `Bearer`.",
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "adminToken", {
    type: "http",
    scheme: "bearer",
    description: "The operator's bootstrap HEARTH_ADMIN_TOKEN, or a named admin key (`POST /admin/keys`); each action is audited with which.",
  });
}
