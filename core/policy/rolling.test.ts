import { describe, expect, it } from "vitest";
import { planRoll, specHash } from "./rolling.ts";

describe("specHash", () => {
  it("is stable under key order and changes with any value", () => {
    const a = specHash({ kind: "handler", module: "/m.mjs", env: { A: "1", B: "2" } });
    expect(specHash({ env: { B: "2", A: "1" }, module: "/m.mjs", kind: "handler" })).toBe(a);
    expect(specHash({ kind: "handler", module: "/m.mjs", env: { A: "1", B: "3" } })).not.toBe(a);
    expect(a).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe("planRoll", () => {
  const w = (id: string, state: "requested" | "initializing" | "idle" | "running" | "draining" | "paused", hash: string | undefined) => ({ id, state, specHash: hash });

  it("leaves a fleet of the current spec alone", () => {
    expect(planRoll({ workers: [w("a", "idle", "new"), w("b", "running", undefined)], current: "new", desired: 2 })).toEqual({ outdated: [], stop: [] });
  });

  it("keeps an old worker serving until a new one is ready, then drains it", () => {
    const before = planRoll({ workers: [w("old", "running", "v1"), w("n", "initializing", "v2")], current: "v2", desired: 1 });
    expect(before).toEqual({ outdated: ["old"], stop: [] });
    const after = planRoll({ workers: [w("old", "running", "v1"), w("n", "idle", "v2")], current: "v2", desired: 1 });
    expect(after).toEqual({ outdated: ["old"], stop: ["old"] });
  });

  it("stops old workers at once when nothing needs serving, and old booting or paused ones always", () => {
    expect(planRoll({ workers: [w("old", "idle", "v1")], current: "v2", desired: 0 })).toEqual({ outdated: ["old"], stop: ["old"] });
    expect(planRoll({ workers: [w("b", "initializing", "v1"), w("p", "paused", "v1"), w("r", "idle", "v1")], current: "v2", desired: 1 })).toEqual({
      outdated: ["b", "p", "r"],
      stop: ["b", "p"],
    });
  });

  it("ignores workers already draining", () => {
    expect(planRoll({ workers: [w("d", "draining", "v1")], current: "v2", desired: 0 })).toEqual({ outdated: [], stop: [] });
  });
});
