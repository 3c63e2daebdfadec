import { createHash, timingSafeEqual } from "node:crypto";
import type { Context, MiddlewareHandler } from "hono";
import { ApiError } from "../api-error.ts";
import type { Principal, TenantStore } from "../services/tenant-store.ts";
import type { RequestVariables } from "./request-context.ts";
import type { TraceParent } from "../../../core/trace/trace-context.ts";
import type { AdminKeyStore } from "../services/admin-key-store.ts";
import type { JobOrigin } from "../services/job-submitter.ts";
import type { AuditBy } from "../../../core/db/audit-writes.ts";
import { BOOTSTRAP_ACTOR } from "../../../core/contracts/audit.ts";
import type { KeyScope } from "../../../core/contracts/key-scope.ts";
import { scopeAllows } from "../../../core/policy/key-scopes.ts";
import { clientAddress } from "./client-address.ts";

/** `audit`: who is acting and from where, for the audit log (every management write takes it). */
export type TenantEnv = { Variables: { principal: Principal; audit: AuditBy } & RequestVariables };
export type AdminEnv = { Variables: { audit: AuditBy } & RequestVariables };

/** The key from `Authorization: Bearer <key>` or, as RunPod's own docs and workers send it, the raw key. */
export function presentedKey(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const trimmed = header.trim();
  const m = /^Bearer\s+(.+)$/i.exec(trimmed);
  const key = (m ? m[1]! : trimmed).trim();
  return key === "" ? undefined : key;
}

export interface TenantAuthOptions {
  tenants: TenantStore;
  /** The scope the request needs (core/policy/key-scopes.ts); a narrower key gets 403 `insufficient_scope`. */
  scope: (c: Context) => KeyScope;
}

/** Resolves the tenant of the presented API key; 401 when missing or unknown (revoked keys are unknown), 403 beyond its scope. */
export function tenantAuth(options: TenantAuthOptions): MiddlewareHandler<TenantEnv> {
  return async function tenantAuthMiddleware(c, next) {
    const key = presentedKey(c.req.header("authorization"));
    if (!key) throw new ApiError(401, "unauthorized", "missing API key: send Authorization: Bearer <key>");
    const principal = await options.tenants.authenticate(key);
    if (!principal) throw new ApiError(401, "unauthorized", "invalid API key");
    const needs = options.scope(c);
    if (!scopeAllows(principal.scope, needs)) {
      throw new ApiError(403, "insufficient_scope", `this API key's scope is ${principal.scope}; ${c.req.method} ${c.req.path} needs a ${needs} key`);
    }
    c.set("principal", principal);
    c.set("audit", { actor: { kind: "api_key", id: principal.keyId }, keyId: principal.keyId, sourceAddress: clientAddress(c) });
    await next();
  };
}

/** Who submits a job and from where, for its acceptance record (and so the audit log). */
export const originOf = (c: { get(key: "principal"): Principal; get(key: "audit"): AuditBy; get(key: "trace"): TraceParent }): JobOrigin => ({
  keyId: c.get("principal").keyId,
  sourceAddress: c.get("audit").sourceAddress,
  trace: c.get("trace"),
});

const digest = (s: string) => createHash("sha256").update(s).digest();

export interface AdminAuthOptions {
  /** The bootstrap token, HEARTH_ADMIN_TOKEN. */
  adminToken: string;
  /** The named admin keys; absent, only the bootstrap token is accepted. */
  adminKeys?: Pick<AdminKeyStore, "authenticate">;
}

/**
 * Checks the operator's bootstrap token (constant-time) or a live admin key (looked up by hash on
 * every request, so a revoked one is refused at once on every replica), and names the actor.
 */
export function adminAuth(options: AdminAuthOptions): MiddlewareHandler<AdminEnv> {
  // Digests, not the tokens: equal lengths whatever is presented, so the time taken does not tell the token's length either.
  const expected = digest(options.adminToken);
  return async function adminAuthMiddleware(c, next) {
    const key = presentedKey(c.req.header("authorization"));
    if (!key) throw new ApiError(401, "unauthorized", "admin token or admin key required");
    if (timingSafeEqual(digest(key), expected)) {
      c.set("audit", { actor: BOOTSTRAP_ACTOR, keyId: null, sourceAddress: clientAddress(c) });
    } else {
      const id = await options.adminKeys?.authenticate(key);
      if (id === undefined) throw new ApiError(401, "unauthorized", "admin token or admin key required");
      c.set("audit", { actor: { kind: "admin_key", id }, keyId: null, sourceAddress: clientAddress(c) });
    }
    await next();
  };
}

/** Only the bootstrap token may create and revoke admin keys: an admin key cannot mint its successors. */
export const requireBootstrap: MiddlewareHandler<AdminEnv> = async function requireBootstrap(c, next) {
  if (c.get("audit").actor.kind !== "bootstrap") throw new ApiError(403, "bootstrap_required", "admin keys are created and revoked with the bootstrap token (HEARTH_ADMIN_TOKEN) only");
  await next();
};
