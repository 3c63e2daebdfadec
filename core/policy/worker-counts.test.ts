import { describe, expect, it } from "vitest";
import { countWorkers } from "./worker-counts.ts";
import type { WorkerHeartbeat } from "../contracts/worker-state.ts";

const hb = (over: Partial<WorkerHeartbeat>): WorkerHeartbeat => ({
  id: "w",
  endpointId: "e",
  state: "idle",
  running: 0,
  concurrency: 1,
  idleSince: 0,
  at: 4000,
  ...over,
});

describe("countWorkers", () => {
  it("counts each state, stale heartbeats as unhealthy, and ready as spare capacity", () => {
    const counts = countWorkers(
      [
        hb({ state: "initializing" }),
        hb({ state: "idle" }),
        hb({ state: "running", running: 1, concurrency: 1 }),
        hb({ state: "running", running: 2, concurrency: 4 }),
        hb({ state: "idle", at: 0 }), // 5000 ms old with staleMs 3000
        hb({ state: "unhealthy" }),
        hb({ state: "draining" }),
      ],
      5000,
      3000,
    );
    expect(counts).toEqual({ idle: 1, initializing: 1, ready: 2, running: 2, throttled: 0, unhealthy: 2, paused: 0 });
  });

  it("counts paused workers apart, never as unhealthy however old their last beat", () => {
    const counts = countWorkers([hb({ state: "paused", at: 0 }), hb({ state: "paused" }), hb({ state: "idle" })], 600_000, 3000);
    expect(counts).toEqual({ idle: 0, initializing: 0, ready: 0, running: 0, throttled: 0, unhealthy: 1, paused: 2 });
  });
});
