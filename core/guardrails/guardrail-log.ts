import type { Redis } from "ioredis";
import { HEARTH_EVENTS, hearthEntry, type GuardrailPayload } from "../log/log-entry.ts";
import type { RedisKeys } from "../queue/keys.ts";
import type { RuleCounts } from "./json-guard.ts";
import type { GuardrailAction, GuardrailDirection, GuardrailRule, GuardrailTrigger } from "../contracts/guardrails.ts";

/** Counts a trigger (prom-client in the API and the worker; labels: endpoint, direction, rule, action). */
export interface GuardrailCounter {
  guardrailTriggered(endpointId: string, trigger: GuardrailTrigger): void;
}

/** The triggers of one check: one per rule found, each with the action its check has. */
export function triggersOf(direction: GuardrailDirection, counts: RuleCounts, actionOf: (rule: GuardrailRule) => GuardrailAction): GuardrailTrigger[] {
  const out: GuardrailTrigger[] = [];
  for (const rule of Object.keys(counts).sort() as GuardrailRule[]) {
    const count = counts[rule] ?? 0;
    if (count > 0) out.push({ direction, rule, action: actionOf(rule), count });
  }
  return out;
}

/**
 * Appends one `hearth:guardrail` entry per trigger to the endpoint's event log (one round trip).
 * The entry names the rule and the action, never the text that matched.
 */
export async function logGuardrailTriggers(
  redis: Redis,
  keys: RedisKeys,
  endpointId: string,
  triggers: readonly GuardrailTrigger[],
  extra: { by: GuardrailPayload["by"]; jobId?: string; guardRule?: string },
): Promise<void> {
  if (triggers.length === 0) return;
  const pipeline = redis.pipeline();
  for (const t of triggers) {
    const payload: GuardrailPayload = {
      direction: t.direction,
      rule: t.rule,
      action: t.action,
      count: t.count,
      by: extra.by,
      ...(extra.jobId !== undefined && { jobId: extra.jobId }),
      ...(extra.guardRule !== undefined && t.rule === "external" && { guardRule: extra.guardRule }),
    };
    pipeline.xadd(keys.log(endpointId), "*", ...hearthEntry(HEARTH_EVENTS.guardrail, payload));
  }
  const results = await pipeline.exec();
  const failed = results?.find(([err]) => err !== null);
  if (failed) throw failed[0];
}
