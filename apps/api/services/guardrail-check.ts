import type { Guardrails } from "../../../core/contracts/guardrails.ts";
import { checkUrlAtSubmission } from "../../../core/net/host-resolution.ts";
import type { UrlPolicy } from "../../../core/net/url-policy.ts";
import { ApiError } from "../api-error.ts";

/**
 * Refuses an external guard the egress policy would not let anyone reach (scheme, literal address,
 * the addresses its name resolves to from here): 400 naming `guardrails.external.url`. It is checked
 * again at every use, on the addresses really connected to (core/guardrails/external-guard.ts).
 */
export async function checkGuardrails(g: Guardrails, egress: UrlPolicy, path: string): Promise<void> {
  if (!g.external) return;
  const field = `${path}.external.url`;
  const v = await checkUrlAtSubmission(new URL(g.external.url), egress).catch(() => ({ ok: true }) as const);
  if (!v.ok) throw ApiError.badRequest(`${field}: ${v.reason}`, [{ path: field, message: v.reason }]);
}
