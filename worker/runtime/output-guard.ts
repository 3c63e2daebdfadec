import type { GuardrailRule, GuardrailTrigger, OutputGuardrails } from "../../core/contracts/guardrails.ts";
import type { ExternalGuardClient } from "../../core/guardrails/external-guard.ts";
import { guardJson, type RuleCounts } from "../../core/guardrails/json-guard.ts";
import { triggersOf } from "../../core/guardrails/guardrail-log.ts";
import { StreamGuard, type StreamStep } from "../../core/guardrails/stream-guard.ts";

/** What the worker's guardrails need beyond each job's settings (built once per worker). */
export interface OutputGuardDeps {
  /** Asks endpoints' external guards; checked against the worker's egress policy at each call. */
  external: ExternalGuardClient;
  /** Counts and logs one job's triggers (never the matched text); a failure is the caller's to log. */
  record: (jobId: string, triggers: GuardrailTrigger[], guardRule?: string) => Promise<void>;
}

export type GuardedValue = { ok: true; output: unknown } | { ok: false; error: string };

const WRITE_AS_IS = (chunk: unknown): StreamStep => ({ kind: "write", chunks: [chunk] });

/**
 * One job's output guardrails, where the output is produced: every chunk before it is written to
 * the stream buffer (and so before `/stream`, the SSE relay and the aggregate see it), the returned
 * value before it is stored (and so before `/status`, `/runsync`, webhooks and the durable record),
 * progress updates before they are shown. A block fails the job with `guardrail_blocked`; for a job
 * from the OpenAI routes, as an engine refusal (HTTP 400 with OpenAI's error body).
 */
export class JobOutputGuard {
  private readonly stream: StreamGuard | undefined;
  private readonly counts: RuleCounts = {};
  private readonly extra: GuardrailTrigger[] = [];
  private guardRule: string | undefined;

  constructor(
    private readonly config: OutputGuardrails,
    private readonly deps: OutputGuardDeps,
    private readonly job: { endpointId: string; jobId: string; openai: boolean },
  ) {
    this.stream = config.pii !== undefined ? new StreamGuard(config.pii) : undefined;
  }

  /** One streamed chunk: what to write now, or a block. The external guard is not asked per chunk (see README). */
  chunk(chunk: unknown): StreamStep {
    return this.stream ? this.stream.push(chunk) : WRITE_AS_IS(chunk);
  }

  /** What the stream held back, once the engine's stream ended. */
  endStream(): StreamStep {
    return this.stream ? this.stream.end() : { kind: "write", chunks: [] };
  }

  /** A progress value (shown by `/status` while the job runs): undefined when it must not be shown. */
  progress(value: unknown): { value: unknown } | undefined {
    if (this.config.pii === undefined) return { value };
    const v = guardJson(value, { pii: this.config.pii });
    this.add(v.counts);
    return v.blocked ? undefined : { value: v.value };
  }

  /** A job's returned value (or a stream's final output): checked by the built-in checks, then the external guard. */
  async value(output: unknown): Promise<GuardedValue> {
    let value = output;
    if (this.config.pii !== undefined) {
      const v = guardJson(output, { pii: this.config.pii });
      this.add(v.counts);
      if (v.blocked) return { ok: false, error: this.blockedError(v.rule) };
      value = v.value;
    }
    const external = this.config.external;
    if (external && value !== undefined) {
      const v = await this.deps.external.check(external, { direction: "output", endpointId: this.job.endpointId, jobId: this.job.jobId, content: value });
      if (!v.ok) {
        this.extra.push({ direction: "output", rule: "external_error", action: external.onError === "allow" ? "allow" : "block", count: 1 });
        if (external.onError !== "allow") return { ok: false, error: this.error("guardrail_unavailable", `the endpoint's external guard did not answer (${v.error}); the output was withheld`, 503) };
      } else if (!v.allow) {
        this.extra.push({ direction: "output", rule: "external", action: "block", count: 1 });
        this.guardRule = v.rule;
        return { ok: false, error: this.blockedError(v.rule === undefined ? "external" : `external:${v.rule}`) };
      }
    }
    return { ok: true, output: value };
  }

  /** The job's error for a blocked stream. */
  blockedError(rule: GuardrailRule | string): string {
    return this.error("guardrail_blocked", `the output was refused by the endpoint's guardrails (rule: ${rule})`, 400);
  }

  /** Counts and logs every trigger of the job, once, as it ends. */
  async finish(): Promise<void> {
    const action = this.config.pii ?? "flag";
    const counts = this.stream ? mergeCounts(this.counts, this.stream.counts) : this.counts;
    const triggers = [...triggersOf("output", counts, () => action), ...this.extra];
    if (triggers.length > 0) await this.deps.record(this.job.jobId, triggers, this.guardRule);
  }

  private add(counts: RuleCounts): void {
    for (const [rule, n] of Object.entries(counts) as [GuardrailRule, number][]) this.counts[rule] = (this.counts[rule] ?? 0) + n;
  }

  private error(code: string, message: string, status: number): string {
    // The OpenAI routes answer an engine refusal with its status and body (core/contracts/openai-error.ts).
    if (this.job.openai) return JSON.stringify({ message, type: status >= 500 ? "server_error" : "invalid_request_error", code, param: null, status });
    return `${code}: ${message}`;
  }
}

function mergeCounts(a: RuleCounts, b: RuleCounts): RuleCounts {
  const out: RuleCounts = { ...a };
  for (const [rule, n] of Object.entries(b) as [GuardrailRule, number][]) out[rule] = (out[rule] ?? 0) + n;
  return out;
}
