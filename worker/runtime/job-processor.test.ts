import { describe, expect, it } from "vitest";
import { valueOutcome } from "./job-processor.ts";

describe("valueOutcome (RunPod handler return semantics)", () => {
  it("completes with any JSON value, including none", () => {
    expect(valueOutcome({ a: 1 })).toEqual({ status: "COMPLETED", output: { a: 1 } });
    expect(valueOutcome([{ error: "in an array is data" }])).toEqual({ status: "COMPLETED", output: [{ error: "in an array is data" }] });
    expect(valueOutcome(undefined)).toEqual({ status: "COMPLETED", output: undefined });
    expect(valueOutcome({ result: 1, error: null })).toEqual({ status: "COMPLETED", output: { result: 1, error: null } });
  });

  it("fails on an `error` key, keeping the rest as output", () => {
    expect(valueOutcome({ error: "bad input" })).toEqual({ status: "FAILED", error: "bad input", output: undefined });
    expect(valueOutcome({ error: { code: 3 }, partial: [1] })).toEqual({ status: "FAILED", error: '{"code":3}', output: { partial: [1] } });
  });

  it("fails output that JSON cannot carry", () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(valueOutcome(circular).status).toBe("FAILED");
    expect(valueOutcome({ n: 1n }).error).toMatch(/not JSON-serialisable/);
  });
});
