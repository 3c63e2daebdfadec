import type { Redis } from "ioredis";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { checksInput, type GuardrailAction, type GuardrailTrigger } from "../../../core/contracts/guardrails.ts";
import { guardJson } from "../../../core/guardrails/json-guard.ts";
import type { ExternalGuardClient } from "../../../core/guardrails/external-guard.ts";
import { logGuardrailTriggers, triggersOf, type GuardrailCounter } from "../../../core/guardrails/guardrail-log.ts";
import type { Log } from "../../../core/log/process-log.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { ApiError } from "../api-error.ts";

export interface InputGuardOptions {
  redis: Redis;
  keys: RedisKeys;
  /** Asks endpoints' external guards (egress-checked at each call). */
  external: ExternalGuardClient;
  /** Counts triggers; absent (HEARTH_METRICS=off), nothing is counted. */
  metrics?: GuardrailCounter;
  log: Log;
}

/**
 * An endpoint's input guardrails, run by `/run`, `/runsync` and the OpenAI routes before anything is
 * queued: the built-in checks (PII, injection) on every string of the input, then the external guard
 * if the endpoint has one. Returns the input to queue (PII redacted when the action is `redact`);
 * throws 400 `guardrail_blocked` for a block, 503 `guardrail_unavailable` for an external guard that
 * cannot answer when the endpoint fails closed. An endpoint without guardrails costs one check.
 */
export class InputGuard {
  constructor(private readonly options: InputGuardOptions) {}

  async check(ep: Endpoint, input: unknown): Promise<unknown> {
    const g = ep.guardrails;
    if (!checksInput(g)) return input;
    let value = input;
    const pii = g!.input?.pii;
    const injection = g!.input?.injection;
    if (pii !== undefined || injection !== undefined) {
      const verdict = guardJson(input, { ...(pii !== undefined && { pii }), ...(injection !== undefined && { injection }) });
      const triggers = triggersOf("input", verdict.counts, (rule): GuardrailAction => (rule === "injection" ? injection! : pii!));
      await this.record(ep, triggers);
      if (verdict.blocked) throw blocked(verdict.rule);
      value = verdict.value;
    }
    const external = g!.external;
    if (external) {
      const v = await this.options.external.check(external, { direction: "input", endpointId: ep.id, content: value });
      if (!v.ok) {
        await this.record(ep, [{ direction: "input", rule: "external_error", action: external.onError === "allow" ? "allow" : "block", count: 1 }]);
        this.options.log({ level: "warn", msg: "external guard did not answer", endpointId: ep.id, error: v.error, onError: external.onError });
        if (external.onError !== "allow") throw new ApiError(503, "guardrail_unavailable", `the endpoint's external guard did not answer (${v.error}); the request was not queued`, undefined, { "Retry-After": "1" });
      } else if (!v.allow) {
        await this.record(ep, [{ direction: "input", rule: "external", action: "block", count: 1 }], v.rule);
        throw blocked(v.rule === undefined ? "external" : `external:${v.rule}`);
      }
    }
    return value;
  }

  /** Counts and logs the triggers; a log write that fails is logged, never the request's failure. */
  private async record(ep: Endpoint, triggers: GuardrailTrigger[], guardRule?: string): Promise<void> {
    if (triggers.length === 0) return;
    for (const t of triggers) this.options.metrics?.guardrailTriggered(ep.id, t);
    await logGuardrailTriggers(this.options.redis, this.options.keys, ep.id, triggers, { by: "api", ...(guardRule !== undefined && { guardRule }) }).catch((err: unknown) => {
      this.options.log({ level: "warn", msg: "guardrail trigger not logged", endpointId: ep.id, error: err instanceof Error ? err.message : String(err) });
    });
  }
}

function blocked(rule: string): ApiError {
  return new ApiError(400, "guardrail_blocked", `the input was refused by the endpoint's guardrails (rule: ${rule})`);
}
