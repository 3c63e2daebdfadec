import { describe, expect, it } from "vitest";
import { decideScaling, type EndpointSnapshot, type ObservedWorker, type ScalingConfig } from "./scaling.ts";

const NOW = 1_700_000_000_000;

const config = (over: Partial<ScalingConfig> = {}): ScalingConfig => ({
  workersMin: 0,
  workersMax: 10,
  idleTimeout: 5,
  scalerType: "REQUEST_COUNT",
  scalerValue: 4,
  ...over,
});

const snapshot = (over: Partial<EndpointSnapshot> = {}): EndpointSnapshot => ({
  queued: 0,
  queuedLowPriority: 0,
  inProgress: 0,
  oldestQueuedAt: null,
  workers: [],
  ...over,
});

const idle = (id: string, idleForMs: number): ObservedWorker => ({
  id,
  state: "idle",
  idleSince: NOW - idleForMs,
  startedAt: NOW - idleForMs - 10_000,
});
const running = (id: string): ObservedWorker => ({ id, state: "running", idleSince: null, startedAt: NOW - 60_000 });
const booting = (id: string): ObservedWorker => ({ id, state: "initializing", idleSince: null, startedAt: NOW - 500 });
const draining = (id: string): ObservedWorker => ({ id, state: "draining", idleSince: null, startedAt: NOW - 60_000 });

describe("decideScaling — REQUEST_COUNT", () => {
  it("wants ceil((queued + inProgress) / scalerValue) workers: 9 queued + 1 in progress, N=4 → 3", () => {
    const d = decideScaling(snapshot({ queued: 9, inProgress: 1, workers: [running("a")] }), config(), NOW);
    expect(d.desired).toBe(3);
    expect(d.start).toBe(2);
    expect(d.stop).toEqual([]);
  });

  it("starts 3 from zero for 3 jobs with scalerValue 1", () => {
    const d = decideScaling(snapshot({ queued: 3 }), config({ scalerValue: 1 }), NOW);
    expect(d).toMatchObject({ desired: 3, start: 3, stop: [] });
  });

  it("counts booting workers as capacity, so a second tick does not start them again", () => {
    const d = decideScaling(snapshot({ queued: 3, workers: [booting("a"), booting("b"), booting("c")] }), config({ scalerValue: 1 }), NOW);
    expect(d).toMatchObject({ desired: 3, start: 0, stop: [] });
  });

  it("clamps to workersMax", () => {
    const d = decideScaling(snapshot({ queued: 40 }), config({ workersMax: 3 }), NOW);
    expect(d).toMatchObject({ desired: 3, start: 3 });
  });

  it("clamps up to workersMin with no work at all", () => {
    const d = decideScaling(snapshot(), config({ workersMin: 2 }), NOW);
    expect(d).toMatchObject({ desired: 2, start: 2, stop: [] });
  });

  it("does not count draining workers as capacity", () => {
    const d = decideScaling(snapshot({ queued: 4, workers: [draining("a")] }), config(), NOW);
    expect(d).toMatchObject({ desired: 1, start: 1 });
  });

  it("never scales up for low-priority work: 5 low-priority jobs on 0 workers → 0", () => {
    const d = decideScaling(snapshot({ queuedLowPriority: 5 }), config({ scalerValue: 1 }), NOW);
    expect(d).toMatchObject({ desired: 0, start: 0, stop: [] });
  });
});

describe("decideScaling — QUEUE_DELAY", () => {
  const qd = (over: Partial<ScalingConfig> = {}) => config({ scalerType: "QUEUE_DELAY", scalerValue: 4, ...over });

  it("starts one worker for the first job on zero workers, however briefly it waited", () => {
    const d = decideScaling(snapshot({ queued: 1, oldestQueuedAt: NOW }), qd(), NOW);
    expect(d).toMatchObject({ desired: 1, start: 1, stop: [] });
  });

  it("starts one for 20 queued jobs on zero workers (one at a time, not one per job)", () => {
    const d = decideScaling(snapshot({ queued: 20, oldestQueuedAt: NOW - 100 }), qd(), NOW);
    expect(d).toMatchObject({ desired: 1, start: 1 });
  });

  it("starts one for a job left active with no live worker, so its stall is detected", () => {
    const d = decideScaling(snapshot({ inProgress: 1 }), qd(), NOW);
    expect(d).toMatchObject({ desired: 1, start: 1 });
  });

  it("adds one worker when the oldest job has waited longer than scalerValue seconds", () => {
    const d = decideScaling(
      snapshot({ queued: 6, inProgress: 2, oldestQueuedAt: NOW - 4001, workers: [running("a"), running("b")] }),
      qd(),
      NOW,
    );
    expect(d).toMatchObject({ desired: 3, start: 1, stop: [] });
  });

  it("does not add at exactly scalerValue seconds of waiting", () => {
    const d = decideScaling(snapshot({ queued: 6, inProgress: 1, oldestQueuedAt: NOW - 4000, workers: [running("a")] }), qd(), NOW);
    expect(d).toMatchObject({ desired: 1, start: 0, stop: [] });
  });

  it("does not add another while one is still booting", () => {
    const d = decideScaling(
      snapshot({ queued: 6, inProgress: 1, oldestQueuedAt: NOW - 30_000, workers: [running("a"), booting("b")] }),
      qd(),
      NOW,
    );
    expect(d).toMatchObject({ desired: 2, start: 0, stop: [] });
  });

  it("does not grow past workersMax", () => {
    const d = decideScaling(
      snapshot({ queued: 6, inProgress: 2, oldestQueuedAt: NOW - 30_000, workers: [running("a"), running("b")] }),
      qd({ workersMax: 2 }),
      NOW,
    );
    expect(d).toMatchObject({ desired: 2, start: 0, stop: [] });
  });

  it("never scales up for low-priority work: low-priority only on 0 workers → 0", () => {
    const d = decideScaling(snapshot({ queuedLowPriority: 3 }), qd(), NOW);
    expect(d).toMatchObject({ desired: 0, start: 0, stop: [] });
  });

  it("keeps busy workers while work is queued below the delay", () => {
    const d = decideScaling(
      snapshot({ queued: 1, inProgress: 2, oldestQueuedAt: NOW - 1000, workers: [running("a"), running("b")] }),
      qd(),
      NOW,
    );
    expect(d).toMatchObject({ desired: 2, start: 0, stop: [] });
  });
});

describe("decideScaling — scale-down", () => {
  it("stops an idle worker only after idleTimeout seconds", () => {
    const before = decideScaling(snapshot({ workers: [idle("a", 4999)] }), config({ idleTimeout: 5 }), NOW);
    expect(before).toMatchObject({ desired: 1, start: 0, stop: [] });
    const after = decideScaling(snapshot({ workers: [idle("a", 5000)] }), config({ idleTimeout: 5 }), NOW);
    expect(after).toMatchObject({ desired: 0, start: 0, stop: ["a"] });
  });

  it("scales to zero when everything is idle past the timeout", () => {
    const d = decideScaling(snapshot({ workers: [idle("a", 9000), idle("b", 7000), idle("c", 6000)] }), config(), NOW);
    expect(d).toMatchObject({ desired: 0, start: 0 });
    expect(d.stop).toEqual(["a", "b", "c"]);
  });

  it("stops the longest idle first and no more than the surplus", () => {
    // 5 jobs in progress with N=4 → 2 wanted; 4 workers, 2 of them busy.
    const workers = [running("r1"), running("r2"), idle("short", 6000), idle("long", 60_000)];
    const d = decideScaling(snapshot({ inProgress: 5, workers }), config({ scalerValue: 4 }), NOW);
    expect(d).toMatchObject({ desired: 2, start: 0 });
    expect(d.stop).toEqual(["long", "short"]);

    // 13 in progress → 4 wanted of 5: only one may go, and it is the longest idle.
    const surplusOne = decideScaling(snapshot({ inProgress: 13, workers: [...workers, running("r3")] }), config({ scalerValue: 4 }), NOW);
    expect(surplusOne).toMatchObject({ desired: 4, start: 0, stop: ["long"] });
  });

  it("never goes below workersMin, keeping the most recently idle", () => {
    const d = decideScaling(
      snapshot({ workers: [idle("a", 60_000), idle("b", 30_000), idle("c", 10_000)] }),
      config({ workersMin: 1 }),
      NOW,
    );
    expect(d).toMatchObject({ desired: 1, start: 0 });
    expect(d.stop).toEqual(["a", "b"]);
  });

  it("never stops busy or booting workers, even with no demand", () => {
    const d = decideScaling(snapshot({ workers: [running("a"), booting("b")] }), config(), NOW);
    expect(d).toMatchObject({ desired: 2, start: 0, stop: [] });
  });

  it("applies the same idle rules under QUEUE_DELAY", () => {
    const d = decideScaling(
      snapshot({ workers: [idle("a", 2000), idle("b", 20_000)] }),
      config({ scalerType: "QUEUE_DELAY", idleTimeout: 10 }),
      NOW,
    );
    expect(d).toMatchObject({ desired: 1, start: 0, stop: ["b"] });
  });

  it("ignores draining workers when counting what to stop", () => {
    const d = decideScaling(snapshot({ workers: [draining("a"), idle("b", 60_000)] }), config({ workersMin: 1 }), NOW);
    expect(d).toMatchObject({ desired: 1, start: 0, stop: [] });
  });
});

describe("decideScaling — hung workers", () => {
  const hung = (id: string): ObservedWorker => ({ ...idle(id, 60_000), heartbeatLost: true });

  it("replaces a hung worker: it is no capacity, so workersMin 1 starts another and kills it", () => {
    const d = decideScaling(snapshot({ workers: [hung("a")] }), config({ workersMin: 1 }), NOW);
    expect(d).toMatchObject({ desired: 1, start: 1, stop: [], replace: ["a"] });
  });

  it("replaces it for queued work too, and not twice once it is draining", () => {
    const d = decideScaling(snapshot({ queued: 2, workers: [hung("a"), running("b")] }), config({ scalerValue: 1 }), NOW);
    expect(d).toMatchObject({ desired: 2, start: 1, replace: ["a"] });
    const later = decideScaling(snapshot({ queued: 2, workers: [{ ...hung("a"), state: "draining" }, running("b"), booting("c")] }), config({ scalerValue: 1 }), NOW);
    expect(later).toMatchObject({ start: 0, replace: [] });
  });
});

describe("decideScaling — snapshot pool and warm pool", () => {
  const paused = (id: string, pausedAgoMs: number): ObservedWorker => ({ id, state: "paused", idleSince: null, startedAt: NOW - 600_000, pausedAt: NOW - pausedAgoMs });
  const qd = (over: Partial<ScalingConfig> = {}) => config({ scalerType: "QUEUE_DELAY", scalerValue: 4, pausesIdle: true, ...over });

  it("a paused worker is no capacity: the first job resumes it (the most recently paused) instead of starting one", () => {
    const d = decideScaling(snapshot({ queued: 1, oldestQueuedAt: NOW, workers: [paused("old", 9000), paused("recent", 1000)] }), qd(), NOW);
    expect(d).toMatchObject({ desired: 1, start: 0, resume: ["recent"], stop: [] });
  });

  it("resumes what it has, then starts the rest", () => {
    const d = decideScaling(snapshot({ queued: 3, workers: [paused("p", 1000)] }), config({ scalerValue: 1, pausesIdle: true }), NOW);
    expect(d).toMatchObject({ desired: 3, start: 2, resume: ["p"] });
  });

  it("without demand, leaves paused workers paused", () => {
    const d = decideScaling(snapshot({ workers: [paused("p", 1000)] }), qd(), NOW);
    expect(d).toMatchObject({ desired: 0, start: 0, resume: [], stop: [] });
  });

  it("with pausesIdle, an idle standby worker past the timeout is paused (it stays in the pool)", () => {
    const d = decideScaling(snapshot({ workers: [idle("a", 60_000)] }), qd({ workersStandby: 1 }), NOW);
    expect(d).toMatchObject({ start: 0, stop: ["a"] });
  });

  it("with pausesIdle, paused workers fill the pool; a short pool is filled by a new start, not a resume", () => {
    expect(decideScaling(snapshot({ workers: [paused("p", 1000)] }), qd({ workersStandby: 1 }), NOW)).toMatchObject({ start: 0, resume: [] });
    expect(decideScaling(snapshot({ workers: [paused("p", 1000)] }), qd({ workersStandby: 2 }), NOW)).toMatchObject({ desired: 1, start: 1, resume: [] });
  });

  it("without pausesIdle, standby workers are started and never stopped for idleness", () => {
    expect(decideScaling(snapshot(), qd({ workersStandby: 2, pausesIdle: false }), NOW)).toMatchObject({ desired: 2, start: 2 });
    const d = decideScaling(snapshot({ workers: [idle("a", 60_000), idle("b", 60_000), idle("c", 90_000)] }), qd({ workersStandby: 2, pausesIdle: false }), NOW);
    expect(d).toMatchObject({ start: 0, stop: ["c"] });
  });

  it("the pool lives within workersMax, demand first", () => {
    const d = decideScaling(snapshot({ queued: 3 }), config({ scalerValue: 1, workersMax: 4, workersStandby: 3 }), NOW);
    expect(d).toMatchObject({ desired: 4, start: 4 });
  });
});
