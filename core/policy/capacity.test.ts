import { describe, expect, it } from "vitest";
import { admitStarts, defaultHostWorkerCap } from "./capacity.ts";

describe("admitStarts", () => {
  const base = { want: 3, hostLive: 0, hostCap: 10, tenantLive: 0, tenantCap: 10 };
  it("starts all the demand when there is room", () => {
    expect(admitStarts(base)).toEqual({ start: 3, throttled: 0 });
  });
  it("holds back what passes the host's cap, as no_capacity", () => {
    expect(admitStarts({ ...base, hostLive: 9 })).toEqual({ start: 1, throttled: 2, waitReason: "no_capacity" });
    expect(admitStarts({ ...base, hostLive: 12 })).toEqual({ start: 0, throttled: 3, waitReason: "no_capacity" });
  });
  it("holds back what passes the tenant's maxWorkers, as quota", () => {
    expect(admitStarts({ ...base, tenantLive: 8 })).toEqual({ start: 2, throttled: 1, waitReason: "quota" });
    expect(admitStarts({ ...base, tenantCap: 0 })).toEqual({ start: 0, throttled: 3, waitReason: "quota" });
  });
  it("names the host first when both bind", () => {
    expect(admitStarts({ ...base, hostLive: 10, tenantLive: 10 })).toEqual({ start: 0, throttled: 3, waitReason: "no_capacity" });
  });
  it("wants nothing, throttles nothing", () => {
    expect(admitStarts({ ...base, want: 0, hostLive: 50 })).toEqual({ start: 0, throttled: 0 });
  });
  it("defaults to four per core, at least 16", () => {
    expect(defaultHostWorkerCap(2)).toBe(16);
    expect(defaultHostWorkerCap(8)).toBe(32);
  });
});

describe("admitStarts under a billing hold", () => {
  it("starts nothing and says why, even when nothing waits", () => {
    const s = { want: 3, hostLive: 0, hostCap: 10, tenantLive: 0, tenantCap: 10, billingHold: true };
    expect(admitStarts(s)).toEqual({ start: 0, throttled: 3, waitReason: "billing" });
    expect(admitStarts({ ...s, want: 0 })).toEqual({ start: 0, throttled: 0, waitReason: "billing" });
  });
});
