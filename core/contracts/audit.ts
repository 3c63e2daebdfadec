import { z } from "zod";

/** Who acted: the operator's bootstrap token, one of its named admin keys, or a tenant's API key. */
export const auditActorKind = z.enum(["bootstrap", "admin_key", "api_key"]);
export type AuditActorKind = z.infer<typeof auditActorKind>;

export interface AuditActor {
  kind: AuditActorKind;
  /** `bootstrap`, the admin key's id or the API key's id. */
  id: string;
}

export const BOOTSTRAP_ACTOR: AuditActor = { kind: "bootstrap", id: "bootstrap" };

/** Every action the audit log records; the names are the contract of `GET …/audit?action=`. */
export const AUDIT_ACTIONS = [
  "tenant.create",
  "tenant.billing_mode.update",
  "tenant.limits.update",
  "key.rate_limits.update",
  "tenant.grants.update",
  "credit.add",
  "price.add",
  "admin_key.create",
  "admin_key.revoke",
  "dead_letter.retry",
  "dead_letter.discard",
  "key.create",
  "key.revoke",
  "endpoint.create",
  "endpoint.update",
  "endpoint.delete",
  "endpoint.reset",
  "webhook_secret.rotate",
  "webhook_delivery.retry",
  "job.submit",
] as const;
export const auditAction = z.enum(AUDIT_ACTIONS);
export type AuditAction = z.infer<typeof auditAction>;

/** One entry as the API shows it. */
export const auditEntryView = z
  .object({
    id: z.number().int(),
    at: z.string().describe("When it was recorded, on the database's clock."),
    actor: z.object({ kind: auditActorKind, id: z.string() }),
    tenantId: z.string().nullable(),
    endpointId: z.string().nullable(),
    modelName: z.string().nullable(),
    modelVersion: z.string().nullable(),
    keyId: z.string().nullable().describe("The tenant API key the action came with."),
    sourceAddress: z.string().nullable().describe("The client's socket address; null where the runtime does not give it."),
    // Read back as text: a newer replica may record an action this one does not name yet.
    action: z.string().describe("One of the actions listed under `action` in the query."),
    targetId: z.string().nullable(),
    detail: z.record(z.string(), z.unknown()),
  })
  .meta({ id: "AuditEntry" });
export type AuditEntryView = z.infer<typeof auditEntryView>;
