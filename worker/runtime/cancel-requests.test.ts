import { describe, expect, it } from "vitest";
import { CancelRequests } from "./cancel-requests.ts";

describe("CancelRequests", () => {
  it("answers a pending cancel once, and forgets it after keepMs", () => {
    let now = 0;
    const c = new CancelRequests(1000, () => now);
    c.add("a");
    c.add("b");
    expect(c.take("a")).toBe(true);
    expect(c.take("a")).toBe(false);
    now = 1000;
    expect(c.take("b")).toBe(false);
    expect(c.take("never")).toBe(false);
  });
});
