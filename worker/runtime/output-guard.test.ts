import { describe, expect, it } from "vitest";
import type { GuardrailTrigger } from "../../core/contracts/guardrails.ts";
import { egressPolicy } from "../../core/config/egress.ts";
import { ExternalGuardClient } from "../../core/guardrails/external-guard.ts";
import { EMPTY_ALLOW_LIST } from "../../core/net/url-policy.ts";
import { parseEngineRefusal } from "../../core/contracts/openai-error.ts";
import { JobOutputGuard } from "./output-guard.ts";

function guardWith(config: ConstructorParameters<typeof JobOutputGuard>[0], openai = false) {
  const recorded: { jobId: string; triggers: GuardrailTrigger[]; guardRule?: string }[] = [];
  const guard = new JobOutputGuard(
    config,
    {
      external: new ExternalGuardClient({ policy: egressPolicy(false, EMPTY_ALLOW_LIST) }),
      record: async (jobId, triggers, guardRule) => void recorded.push({ jobId, triggers, ...(guardRule !== undefined && { guardRule }) }),
    },
    { endpointId: "ep1", jobId: "job1", openai },
  );
  return { guard, recorded };
}

describe("JobOutputGuard", () => {
  it("redacts a returned value and records one trigger per rule at the end", async () => {
    const { guard, recorded } = guardWith({ pii: "redact" });
    expect(await guard.value({ answer: "a@b.io and c@d.io, 4111111111111111" })).toEqual({ ok: true, output: { answer: "[REDACTED:email] and [REDACTED:email], [REDACTED:card]" } });
    await guard.finish();
    expect(recorded).toEqual([
      {
        jobId: "job1",
        triggers: [
          { direction: "output", rule: "card", action: "redact", count: 1 },
          { direction: "output", rule: "email", action: "redact", count: 2 },
        ],
      },
    ]);
  });

  it("fails an OpenAI-route job as an engine refusal the API answers with 400", async () => {
    const { guard } = guardWith({ pii: "block" }, true);
    const r = await guard.value({ choices: [{ message: { content: "sk-proj-abcdefghijklmnopqrstuvwxyz0123" } }] });
    expect(r.ok).toBe(false);
    expect(parseEngineRefusal((r as { error: string }).error)).toMatchObject({ status: 400, code: "guardrail_blocked" });
  });

  it("fails closed on an external guard the egress policy refuses at use", async () => {
    const { guard, recorded } = guardWith({ external: { url: "http://10.0.0.1/check", timeoutMs: 500, onError: "block" } });
    const r = await guard.value({ x: 1 });
    expect(r).toMatchObject({ ok: false, error: expect.stringMatching(/^guardrail_unavailable: /) });
    await guard.finish();
    expect(recorded[0]!.triggers).toEqual([{ direction: "output", rule: "external_error", action: "block", count: 1 }]);
  });

  it("hides a progress value that must be blocked, records nothing when nothing matched", async () => {
    const { guard, recorded } = guardWith({ pii: "block" });
    expect(guard.progress({ step: 1 })).toEqual({ value: { step: 1 } });
    expect(guardWith({ pii: "block" }).guard.progress("call 415-555-0132 now")).toBeUndefined();
    await guard.finish();
    expect(recorded).toEqual([]);
  });
});
