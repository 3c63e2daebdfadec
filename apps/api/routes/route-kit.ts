import { OpenAPIHono, type Hook } from "@hono/zod-openapi";
import type { Env } from "hono";
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
  404: error("No such resource for this tenant (another tenant's ids are indistinguishable from missing ones)."),
} as const;

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
  const target = (result as { target?: string }).target ?? "json";
  if (target === "param") throw ApiError.notFound("resource");
  const issues: IssueDetail[] = result.error.issues.map((i) => ({ path: issuePath(target, i.path), message: i.message }));
  throw ApiError.badRequest(`invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`, issues);
};

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
  app.openAPIRegistry.registerComponent("securitySchemes", "adminToken", { type: "http", scheme: "bearer", description: "The operator's HEARTH_ADMIN_TOKEN." });
}
