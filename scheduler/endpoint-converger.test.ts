import { describe, expect, it } from "vitest";
import type { LogLine } from "../core/log/process-log.ts";
import { EndpointConverger, type EndpointConvergerOptions } from "./endpoint-converger.ts";

/** Only what skip() and forgetDeleted() touch; converge() is exercised by test/scheduler.test.ts on real processes. */
function converger(logs: LogLine[]): EndpointConverger {
  const opts = { acting: () => true, now: () => 0, log: (e: LogLine) => logs.push(e) } as Partial<EndpointConvergerOptions>;
  return new EndpointConverger(opts as EndpointConvergerOptions);
}

describe("EndpointConverger's memory of endpoints", () => {
  it("logs an unreadable endpoint once per reason, and forgets it once the endpoint is gone", () => {
    const logs: LogLine[] = [];
    const c = converger(logs);
    const skipped = () => logs.filter((l) => l.msg === "endpoint skipped").length;

    c.skip("ep-a", "bad engine");
    c.skip("ep-a", "bad engine");
    expect(skipped()).toBe(1);

    // Still listed (unreadable endpoints are among the existing ones): remembered, not logged again.
    c.forgetDeleted(new Set(["ep-a"]));
    c.skip("ep-a", "bad engine");
    expect(skipped()).toBe(1);

    // Deleted: forgotten, so the same id and reason would be news again.
    c.forgetDeleted(new Set());
    c.skip("ep-a", "bad engine");
    expect(skipped()).toBe(2);
  });
});
