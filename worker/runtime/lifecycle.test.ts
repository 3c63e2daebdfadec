import { describe, expect, it } from "vitest";
import { IllegalTransitionError, Lifecycle } from "./lifecycle.ts";

describe("worker lifecycle", () => {
  it("starts initializing and walks the happy path to exited", () => {
    const l = new Lifecycle();
    const seen: string[] = [];
    l.onChange((to, from) => seen.push(`${from}>${to}`));
    expect(l.state).toBe("initializing");
    l.to("idle");
    l.to("running");
    l.to("idle");
    l.to("running");
    l.to("draining");
    l.to("exited");
    expect(seen).toEqual(["initializing>idle", "idle>running", "running>idle", "idle>running", "running>draining", "draining>exited"]);
  });

  it("pauses only from idle; a paused worker resumes to idle or drains, never runs a job directly", () => {
    const l = new Lifecycle();
    expect(l.can("paused")).toBe(false);
    l.to("idle");
    l.to("paused");
    expect(() => l.to("running")).toThrow(IllegalTransitionError);
    l.to("idle");
    l.to("running");
    expect(l.can("paused")).toBe(false);
    l.to("idle");
    l.to("paused");
    l.to("draining");
    l.to("exited");
    expect(l.state).toBe("exited");
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
    failed.to("exited");
    expect(failed.state).toBe("exited");
    const drained = new Lifecycle();
    drained.to("draining");
    drained.to("exited");
    expect(drained.state).toBe("exited");
  });

  it.each([
    ["initializing", "running"],
    ["idle", "exited"],
    ["idle", "initializing"],
    ["running", "exited"],
    ["draining", "idle"],
    ["draining", "running"],
  ] as const)("refuses %s → %s", (from, to) => {
    const l = new Lifecycle();
    const path: Record<string, string[]> = {
      initializing: [],
      idle: ["idle"],
      running: ["idle", "running"],
      draining: ["draining"],
    };
    for (const s of path[from] ?? []) l.to(s as Parameters<Lifecycle["to"]>[0]);
    expect(l.state).toBe(from);
    expect(() => l.to(to)).toThrow(IllegalTransitionError);
    expect(l.state).toBe(from);
  });

  it("refuses every transition out of exited and does not notify on refusal", () => {
    const l = new Lifecycle();
    l.to("exited");
    let calls = 0;
    l.onChange(() => calls++);
    for (const s of ["initializing", "idle", "running", "draining", "exited", "unhealthy"] as const) {
      expect(l.can(s)).toBe(false);
      expect(() => l.to(s)).toThrow(/exited → /);
    }
    expect(calls).toBe(0);
  });
});
