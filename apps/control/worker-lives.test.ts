import { describe, expect, it } from "vitest";
import type { WorkerPayload } from "../../core/log/log-entry.ts";
import { exitReason, WorkerLives } from "./worker-lives.ts";

const quiet = { draining: false, unhealthy: false };

describe("exitReason", () => {
  it.each<[string, WorkerPayload, typeof quiet, string]>([
    ["lost", { workerId: "w", state: "lost", reason: "heartbeat stopped" }, quiet, "lost"],
    ["the provider refused", { workerId: "w", state: "exited", by: "scheduler", reason: "start failed: spawn ENOENT" }, quiet, "start_failed"],
    ["the engine did not start", { workerId: "w", state: "exited", by: "worker", reason: "engine failed to start: no model" }, quiet, "start_failed"],
    ["ended while unhealthy", { workerId: "w", state: "exited", by: "scheduler", exitCode: 1 }, { draining: false, unhealthy: true }, "unhealthy"],
    ["a non-zero code unasked", { workerId: "w", state: "exited", by: "scheduler", reason: "process ended without being asked to stop", exitCode: 137 }, quiet, "crash"],
    ["a non-zero code after a drain (killed after its grace)", { workerId: "w", state: "exited", by: "scheduler", reason: "idle timeout", exitCode: 137 }, { draining: true, unhealthy: false }, "normal"],
    ["code 0", { workerId: "w", state: "exited", by: "scheduler", reason: "exited on its own", exitCode: 0 }, quiet, "normal"],
    ["the worker's own drain", { workerId: "w", state: "exited", by: "worker", reason: "SIGTERM" }, quiet, "normal"],
    ["no code, no drain", { workerId: "w", state: "exited", by: "scheduler", reason: "whatever" }, quiet, "other"],
  ])("%s", (_, p, life, reason) => {
    expect(exitReason(p, life)).toBe(reason);
  });
});

describe("WorkerLives", () => {
  it("does not count a resume from paused, or a second exit, as anything", () => {
    const lives = new WorkerLives();
    const out = lives.take("ep", [
      { kind: "worker", id: "1000-0", p: { workerId: "w", state: "requested" } },
      { kind: "worker", id: "1200-0", p: { workerId: "w", state: "initializing" } },
      { kind: "worker", id: "2000-0", p: { workerId: "w", state: "idle" } },
      { kind: "worker", id: "3000-0", p: { workerId: "w", state: "paused" } },
      { kind: "worker", id: "9000-0", p: { workerId: "w", state: "idle" } },
      { kind: "worker", id: "9500-0", p: { workerId: "w", state: "exited", by: "worker", reason: "SIGTERM" } },
      { kind: "worker", id: "9600-0", p: { workerId: "w", state: "exited", by: "scheduler", exitCode: 1 } },
    ]);
    expect(out.coldStarts).toEqual([
      { phase: "provision", ms: 200 },
      { phase: "boot", ms: 800 },
      { phase: "total", ms: 1000 },
    ]);
    expect(out.exits).toEqual(["normal"]);
  });

  it("remembers at most maxWorkers workers: a forgotten one's phases are not observed", () => {
    const lives = new WorkerLives(1);
    lives.take("ep", [
      { kind: "worker", id: "1000-0", p: { workerId: "a", state: "requested" } },
      { kind: "worker", id: "1000-1", p: { workerId: "b", state: "requested" } },
    ]);
    expect(lives.remembered).toBe(1);
    const out = lives.take("ep", [
      { kind: "worker", id: "2000-0", p: { workerId: "b", state: "initializing" } },
      { kind: "worker", id: "2000-1", p: { workerId: "a", state: "initializing" } },
    ]);
    expect(out.coldStarts).toEqual([{ phase: "provision", ms: 1000 }]);
  });
});
