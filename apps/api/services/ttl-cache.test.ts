import { describe, expect, it } from "vitest";
import { TtlCache } from "./ttl-cache.ts";

describe("TtlCache", () => {
  it("expires entries for get, keeps them for getStale within the stale window, and forgets deleted ones", () => {
    let t = 0;
    const cache = new TtlCache<string>(1000, 10, () => t);
    cache.set("a", "A");
    cache.set("b", "B");
    t = 999;
    expect(cache.get("a")).toBe("A");
    t = 1000;
    expect(cache.get("a")).toBeUndefined();
    expect(cache.getStale("a", 500)).toBe("A");
    t = 1499;
    expect(cache.getStale("a", 500)).toBe("A");
    t = 1500;
    expect(cache.getStale("a", 500)).toBeUndefined();
    cache.delete("b");
    expect(cache.getStale("b", 10_000)).toBeUndefined();
  });

  it("evicts the oldest entry past its bound", () => {
    const cache = new TtlCache<number>(1000, 2, () => 0);
    cache.set("a", 1);
    cache.set("b", 2);
    cache.set("c", 3);
    expect(cache.get("a")).toBeUndefined();
    expect(cache.getStale("a", 1e9)).toBeUndefined();
    expect(cache.get("c")).toBe(3);
  });
});
