import { describe, expect, it } from "vitest";
import { shouldPreload } from "./preload-trigger.ts";

describe("shouldPreload", () => {
  it("fires for an endpoint seen for the first time, whatever its demand", () => {
    expect(shouldPreload(undefined, 0)).toBe(true);
    expect(shouldPreload(undefined, 3)).toBe(true);
  });

  it("fires when demand rises, not when it holds or falls", () => {
    expect(shouldPreload(0, 1)).toBe(true);
    expect(shouldPreload(2, 3)).toBe(true);
    expect(shouldPreload(1, 1)).toBe(false);
    expect(shouldPreload(3, 1)).toBe(false);
    expect(shouldPreload(0, 0)).toBe(false);
  });

  it("does not fire beside a worker starting now (it fetches the model itself); demand held back is warmed", () => {
    expect(shouldPreload(undefined, 1, 1)).toBe(false);
    expect(shouldPreload(0, 1, 1)).toBe(false);
    expect(shouldPreload(1, 3, 2)).toBe(false);
    expect(shouldPreload(0, 1, 0)).toBe(true);
  });
});
