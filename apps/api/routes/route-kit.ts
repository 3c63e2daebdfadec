import { OpenAPIHono, type Hook, type RouteConfig } from "@hono/zod-openapi";
import type { Context, Env } from "hono";
import { z } from "zod";
import { ApiError, type IssueDetail } from "../api-error.ts";

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

const error = (description: string) => ({ description, content: { "application/json": { schema: errorBody } } });

/** The error answers most routes share, for the document; `app.onError` produces them. */
export const commonErrors = {
  400: error("The request is malformed; `issues` names each offending field."),
  401: error("No API key, or an unknown or revoked one."),
  403: error("The API key's scope does not reach this route (`insufficient_scope`): `read` < `run` (jobs) < `full` (management)."),
  404: error("No such resource for this tenant (another tenant's ids are indistinguishable from missing ones)."),
} as const;

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

/** A 200 with a JSON body. */
export function okJson<S extends z.ZodType>(schema: S, description: string) {
  return { 200: { description, content: { "application/json": { schema } } } };
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
  const issues: IssueDetail[] = error.issues.map((i) => ({ path: issuePath(target, i.path), message: i.message }));
  throw ApiError.badRequest(`invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`, issues);
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
