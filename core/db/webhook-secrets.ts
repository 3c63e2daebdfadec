import { randomBytes } from "node:crypto";
import type { Sql, TransactionSql } from "postgres";
import { z } from "zod";
import type { SecretBox } from "../secrets/secret-box.ts";
import { appendAudit, auditRow, type AuditBy } from "./audit-writes.ts";

/** How long a rotated-out secret keeps signing beside the new one. Default 24 h. */
export const DEFAULT_WEBHOOK_SECRET_GRACE_MS = 24 * 3_600_000;

const secretRow = z.object({ secret: z.string(), endpoint_id: z.string() });

/** A new Standard Webhooks signing secret: `whsec_` and 24 random bytes in base64. */
export function newWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString("base64")}`;
}

/**
 * Endpoints' webhook signing secrets (`webhook_secrets`): sealed with HEARTH_SECRETS_KEY where one
 * is set (the context binds a value to its endpoint), stored as they are otherwise (say so to the
 * operator: the README does). Shown to the tenant once, when made; never returned again.
 */
export class WebhookSecretStore {
  constructor(
    private readonly sql: Sql,
    private readonly box: SecretBox | undefined,
  ) {}

  /** Makes the endpoint's first secret (in the transaction that creates the endpoint, when given). */
  async create(endpointId: string, tx?: TransactionSql): Promise<string> {
    const secret = newWebhookSecret();
    await (tx ?? this.sql)`insert into webhook_secrets (endpoint_id, secret) values (${endpointId}, ${this.store(endpointId, secret)})`;
    return secret;
  }

  /**
   * A new secret; the ones still signing keep signing for `graceMs` more (so receivers can switch).
   * Returns when the old ones stop.
   */
  async rotate(endpointId: string, graceMs: number, audit: { by: AuditBy; tenantId: string }): Promise<{ secret: string; previousExpiresAt: string }> {
    const secret = newWebhookSecret();
    const previousExpiresAt = await this.sql.begin(async (tx) => {
      const [row] = z.array(z.object({ at: z.coerce.date() })).parse(await tx`select now() + ${`${graceMs} milliseconds`}::interval as at`);
      await tx`update webhook_secrets set expires_at = ${row!.at.toISOString()}::timestamptz where endpoint_id = ${endpointId} and (expires_at is null or expires_at > ${row!.at.toISOString()}::timestamptz)`;
      await tx`insert into webhook_secrets (endpoint_id, secret) values (${endpointId}, ${this.store(endpointId, secret)})`;
      // Never the secret itself: when the old one stops signing is what an auditor needs.
      await appendAudit(tx, [auditRow(audit.by, { action: "webhook_secret.rotate", tenantId: audit.tenantId, endpointId, targetId: endpointId, detail: { previousExpiresAt: row!.at.toISOString() } })]);
      return row!.at.toISOString();
    });
    return { secret, previousExpiresAt };
  }

  /** The secrets that sign the endpoint's deliveries now, newest first; unopenable ones are left out (and reported). */
  async signing(endpointId: string, onUnopenable: (err: unknown) => void = () => {}): Promise<string[]> {
    const rows = z.array(secretRow).parse(
      await this.sql`select secret, endpoint_id from webhook_secrets where endpoint_id = ${endpointId} and (expires_at is null or expires_at > now()) order by id desc`,
    );
    return rows.flatMap((r) => {
      try {
        return [this.open(r.endpoint_id, r.secret)];
      } catch (err) {
        onUnopenable(err);
        return [];
      }
    });
  }

  private store(endpointId: string, secret: string): string {
    return this.box ? `sealed:${this.box.seal(secret, context(endpointId))}` : `plain:${secret}`;
  }

  private open(endpointId: string, stored: string): string {
    if (stored.startsWith("plain:")) return stored.slice("plain:".length);
    if (stored.startsWith("sealed:") && this.box) return this.box.open(stored.slice("sealed:".length), context(endpointId));
    throw new Error(stored.startsWith("sealed:") ? "a sealed webhook secret needs HEARTH_SECRETS_KEY" : "not a stored webhook secret");
  }
}

const context = (endpointId: string) => `webhook-secret:${endpointId}`;
