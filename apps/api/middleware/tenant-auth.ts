import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "../api-error.ts";
import type { Principal, TenantStore } from "../services/tenant-store.ts";
import type { RequestVariables } from "./request-context.ts";

export type TenantEnv = { Variables: { principal: Principal } & RequestVariables };

/** The key from `Authorization: Bearer <key>` or, as RunPod's own docs and workers send it, the raw key. */
export function presentedKey(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  const m = /^Bearer\s+(.+)$/i.exec(trimmed);
  const key = (m ? m[1]! : trimmed).trim();
  return key === "" ? undefined : key;
}

/** Resolves the tenant of the presented API key; 401 when missing or unknown (revoked keys are unknown). */
export function tenantAuth(options: { tenants: TenantStore }): MiddlewareHandler<TenantEnv> {
  return async function tenantAuthMiddleware(c, next) {
    const key = presentedKey(c.req.header("authorization"));
    if (!key) throw new ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer <key>");
    const principal = await options.tenants.authenticate(key);
    if (!principal) throw new ApiError(401, "unauthorized", "invalid API key");
    c.set("principal", principal);
    await next();
  };
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/** Checks the operator's admin token (constant-time). */
export function adminAuth(options: { adminToken: string }): MiddlewareHandler {
  // Digests, not the tokens: equal lengths whatever is presented, so the time taken does not tell the token's length either.
  const expected = digest(options.adminToken);
  return async function adminAuthMiddleware(c, next) {
    const key = presentedKey(c.req.header("authorization"));
    if (!key || !timingSafeEqual(digest(key), expected)) {
      throw new ApiError(401, "unauthorized", "admin token required");
    }
    await next();
  };
}
