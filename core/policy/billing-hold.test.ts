import { describe, expect, it } from "vitest";
import { billingHold } from "./billing-hold.ts";

const base = { mode: "enforce" as const, tenantMode: "enforce" as const, balanceMicros: 1, spentLastHourMicros: 0, spendPerHourMicros: 1000 };

describe("billingHold", () => {
  it("holds starts and stops idle workers at zero balance or below, or an unknown balance", () => {
    expect(billingHold(base)).toEqual({ holdStarts: false, stopIdle: false });
    for (const balanceMicros of [0, -5, undefined]) expect(billingHold({ ...base, balanceMicros })).toEqual({ holdStarts: true, stopIdle: true, why: "zero_balance" });
  });

  it("never for a metered tenant, nor for anyone under HEARTH_BILLING_MODE=meter", () => {
    expect(billingHold({ ...base, tenantMode: "meter", balanceMicros: -100 }).holdStarts).toBe(false);
    expect(billingHold({ ...base, mode: "meter", balanceMicros: -100 }).holdStarts).toBe(false);
  });

  it("holds starts only (idle workers keep running) once the spend per hour is reached, in any mode", () => {
    expect(billingHold({ ...base, spentLastHourMicros: 999 }).holdStarts).toBe(false);
    expect(billingHold({ ...base, spentLastHourMicros: 1000 })).toEqual({ holdStarts: true, stopIdle: false, why: "spend_limit" });
    expect(billingHold({ ...base, mode: "meter", spentLastHourMicros: 5000 })).toEqual({ holdStarts: true, stopIdle: false, why: "spend_limit" });
  });
});
