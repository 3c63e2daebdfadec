import type { GuardrailAction, GuardrailRule } from "../contracts/guardrails.ts";
import { redact, scanPii, type PiiFinding } from "./pii-scan.ts";
import { scanInjection } from "./injection-scan.ts";

/** What to look for in one direction, with the action of each check. */
export interface TextChecks {
  pii?: GuardrailAction;
  injection?: Exclude<GuardrailAction, "redact">;
}

/** Matches per rule in one check; empty when nothing was found. */
export type RuleCounts = Partial<Record<GuardrailRule, number>>;

export type GuardVerdict =
  /** Nothing to block: `value` is the input with its PII redacted (the same object when nothing changed). */
  | { blocked: false; value: unknown; counts: RuleCounts }
  /** A check whose action is `block` found something; `rule` is the first such rule. */
  | { blocked: true; rule: GuardrailRule; counts: RuleCounts };

/**
 * Checks every string in a JSON value (object keys are names, not content: not checked). Walks with
 * an explicit stack, so nesting of any depth costs no recursion; the value is copied only when a
 * redaction changes it. Pure.
 */
export function guardJson(value: unknown, checks: TextChecks): GuardVerdict {
  const counts: RuleCounts = {};
  let blockedBy: GuardrailRule | undefined;
  let needsRedaction = false;
  forEachString(value, (s) => {
    const r = checkText(s, checks, counts);
    if (r.blockedBy && blockedBy === undefined) blockedBy = r.blockedBy;
    if (r.findings.length > 0 && checks.pii === "redact") needsRedaction = true;
    return blockedBy !== undefined;
  });
  if (blockedBy !== undefined) return { blocked: true, rule: blockedBy, counts };
  if (!needsRedaction) return { blocked: false, value, counts };
  return { blocked: false, value: mapStrings(value, (s) => redact(s, scanPii(s))), counts };
}

/** One string's findings, counted into `counts`; `blockedBy` when a blocking check matched. */
export function checkText(text: string, checks: TextChecks, counts: RuleCounts): { findings: PiiFinding[]; blockedBy?: GuardrailRule } {
  let blockedBy: GuardrailRule | undefined;
  if (checks.injection !== undefined && scanInjection(text) > 0) {
    counts.injection = (counts.injection ?? 0) + 1;
    if (checks.injection === "block") blockedBy = "injection";
  }
  const findings = checks.pii !== undefined ? scanPii(text) : [];
  for (const f of findings) counts[f.rule] = (counts[f.rule] ?? 0) + 1;
  if (findings.length > 0 && checks.pii === "block") blockedBy ??= findings[0]!.rule;
  return { findings, ...(blockedBy !== undefined && { blockedBy }) };
}

/** Calls `visit` on every string in `value`, until it returns true. */
function forEachString(value: unknown, visit: (s: string) => boolean): void {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === "string") {
      if (visit(v)) return;
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push(v[i]);
    } else if (v !== null && typeof v === "object") {
      const vals = Object.values(v);
      for (let i = vals.length - 1; i >= 0; i--) stack.push(vals[i]);
    }
  }
}

/** A copy of `value` with every string mapped; built with an explicit stack (any depth). */
export function mapStrings(value: unknown, map: (s: string) => string): unknown {
  if (typeof value === "string") return map(value);
  if (value === null || typeof value !== "object") return value;
  const container = (v: object): Record<string, unknown> => (Array.isArray(v) ? [] : {}) as Record<string, unknown>;
  const root = container(value);
  const stack: [Record<string, unknown>, Record<string, unknown>][] = [[value as Record<string, unknown>, root]];
  while (stack.length > 0) {
    const [src, dst] = stack.pop()!;
    for (const k of Object.keys(src)) {
      const item = src[k];
      if (typeof item === "string") dst[k] = map(item);
      else if (item !== null && typeof item === "object") {
        const copy = container(item);
        dst[k] = copy;
        stack.push([item as Record<string, unknown>, copy]);
      } else dst[k] = item;
    }
  }
  return root;
}

/** Rules with at least one match, in a fixed order (for counters and log entries). */
export function triggeredRules(counts: RuleCounts): GuardrailRule[] {
  return (Object.keys(counts) as GuardrailRule[]).filter((r) => (counts[r] ?? 0) > 0).sort();
}
