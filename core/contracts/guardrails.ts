import { z } from "zod";

/**
 * An endpoint's guardrails (its spec's `guardrails` field), e.g.
 * `{"input": {"pii": "block", "injection": "flag"}, "output": {"pii": "redact"}, "external": {"url": "https://guard.internal/check"}}`.
 *
 * Actions, per check:
 * - `block`: input → the request is refused before it is queued (400 `guardrail_blocked`); output →
 *   nothing more of the output is written, the job ends FAILED with `guardrail_blocked`.
 * - `redact`: each match is replaced by `[REDACTED:<rule>]` (`email`, `phone`, `card`, `secret`) and
 *   the request or output goes on. Only PII can be redacted: an injection is not a span to cut out.
 * - `flag`: passes unchanged; the trigger is counted and logged like the others.
 * Every trigger is counted (`hearth_guardrail_triggers_total`) and written to the endpoint's event
 * log with its rule, never the matched text.
 */
export const guardrailAction = z.enum(["block", "redact", "flag"]);
export type GuardrailAction = z.infer<typeof guardrailAction>;

const piiAction = guardrailAction.describe("E-mail addresses, phone numbers, card numbers (Luhn-checked) and API-key-like secrets: block, redact or flag.");
const injectionAction = z.enum(["block", "flag"]).describe("Prompt-injection heuristic (phrases such as \"ignore previous instructions\", chat-template markers): block or flag.");

export const guardrailsInput = z.strictObject({ pii: piiAction.optional(), injection: injectionAction.optional() });
export const guardrailsOutput = z.strictObject({ pii: piiAction.optional() });

/** An HTTP(S) URL; whether it may be reached is the egress policy's (checked at submission and again at each use). */
const guardUrl = z
  .string()
  .min(1)
  .max(2048)
  .refine((s) => {
    try {
      const u = new URL(s);
      return (u.protocol === "https:" || u.protocol === "http:") && u.username === "" && u.password === "";
    } catch {
      return false;
    }
  }, "must be an http(s) URL without credentials");

/**
 * An external guard over HTTP (a NeMo Guardrails sidecar, say), asked for the request's input before
 * it is queued and for a job's output (a returned value; streamed chunks are not sent, see README)
 * before it is stored. Contract: core/guardrails/external-guard.ts.
 */
export const externalGuard = z.strictObject({
  url: guardUrl,
  /** How long one check may take (ms). Default 2000. */
  timeoutMs: z.number().int().min(50).max(10_000).default(2000),
  /**
   * What a guard that cannot answer (timeout, connection refused, non-2xx, bad JSON) means: `block`
   * (default: fail closed, the request is refused with 503 `guardrail_unavailable`) or `allow` (fail open).
   */
  onError: z.enum(["block", "allow"]).default("block"),
});
export type ExternalGuard = z.infer<typeof externalGuard>;

export const guardrails = z
  .strictObject({
    input: guardrailsInput.optional(),
    output: guardrailsOutput.optional(),
    external: externalGuard.optional(),
  })
  .meta({ id: "Guardrails" });
export type Guardrails = z.infer<typeof guardrails>;

/** What the worker needs of an endpoint's guardrails, carried in each job's data (core/queue/job-catalog.ts). */
export const outputGuardrails = z.strictObject({
  pii: guardrailAction.optional(),
  external: externalGuard.optional(),
});
export type OutputGuardrails = z.infer<typeof outputGuardrails>;

/** The worker's part of an endpoint's guardrails, or undefined when there is nothing for it to check. */
export function outputPart(g: Guardrails | undefined): OutputGuardrails | undefined {
  if (!g) return undefined;
  const pii = g.output?.pii;
  if (pii === undefined && g.external === undefined) return undefined;
  return { ...(pii !== undefined && { pii }), ...(g.external && { external: g.external }) };
}

/** True when the API has anything to check of a request's input. */
export function checksInput(g: Guardrails | undefined): boolean {
  return g !== undefined && (g.input?.pii !== undefined || g.input?.injection !== undefined || g.external !== undefined);
}

/** Rules as they appear in metrics and the event log: a fixed set. */
export const GUARDRAIL_RULES = ["email", "phone", "card", "secret", "injection", "external", "external_error"] as const;
export type GuardrailRule = (typeof GUARDRAIL_RULES)[number];
export type GuardrailDirection = "input" | "output";

/** One trigger, as counted and logged: never the matched text. */
export interface GuardrailTrigger {
  direction: GuardrailDirection;
  rule: GuardrailRule;
  /** What was done: the configured action, or for an unanswering external guard `block`/`allow`. */
  action: GuardrailAction | "allow";
  /** Matches of this rule in this check. */
  count: number;
}
