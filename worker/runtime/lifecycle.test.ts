import { describe, expect, it } from "vitest";
import { IllegalTransitionError, Lifecycle } from "./lifecycle.ts";

describe("worker lifecycle", () => {
  it("starts booting and walks the happy path to stopped", () => {
    const l = new Lifecycle();
    const seen: string[] = [];
    l.onChange((to, from) => seen.push(`${from}>${to}`));
    expect(l.state).toBe("booting");
    l.to("idle");
    l.to("running");
    l.to("idle");
    l.to("running");
    l.to("draining");
    l.to("stopped");
    expect(seen).toEqual(["booting>idle", "idle>running", "running>idle", "idle>running", "running>draining", "draining>stopped"]);
  });

  it("goes unhealthy and back", () => {
    const l = new Lifecycle();
    l.to("idle");
    l.to("unhealthy");
    l.to("running");
    l.to("unhealthy");
    l.to("idle");
    expect(l.state).toBe("idle");
  });

  it("lets a failed boot stop, and a boot drain", () => {
    const failed = new Lifecycle();
    failed.to("stopped");
    expect(failed.state).toBe("stopped");
    const drained = new Lifecycle();
    drained.to("draining");
    drained.to("stopped");
    expect(drained.state).toBe("stopped");
  });

  it.each([
    ["booting", "running"],
    ["idle", "stopped"],
    ["idle", "booting"],
    ["running", "stopped"],
    ["draining", "idle"],
    ["draining", "running"],
  ] as const)("refuses %s → %s", (from, to) => {
    const l = new Lifecycle();
    const path: Record<string, string[]> = {
      booting: [],
      idle: ["idle"],
      running: ["idle", "running"],
      draining: ["draining"],
    };
    for (const s of path[from] ?? []) l.to(s as Parameters<Lifecycle["to"]>[0]);
    expect(l.state).toBe(from);
    expect(() => l.to(to)).toThrow(IllegalTransitionError);
    expect(l.state).toBe(from);
  });

  it("refuses every transition out of stopped and does not notify on refusal", () => {
    const l = new Lifecycle();
    l.to("stopped");
    let calls = 0;
    l.onChange(() => calls++);
    for (const s of ["booting", "idle", "running", "draining", "stopped", "unhealthy"] as const) {
      expect(l.can(s)).toBe(false);
      expect(() => l.to(s)).toThrow(/stopped → /);
    }
    expect(calls).toBe(0);
  });
});
