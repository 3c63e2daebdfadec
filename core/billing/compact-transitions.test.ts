import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { WorkerState } from "../contracts/worker-state.ts";
import { compactTransitions } from "./compact-transitions.ts";
import { meterSession, type MeterTransition } from "./session-meter.ts";
import type { PriceTable } from "./price-table.ts";

const T = Date.UTC(2025, 2, 10, 12, 0, 0);
const TABLE: PriceTable = { versions: [{ effectiveFrom: 0, prices: { cpu: 20, AMPERE_80: 760 } }] };
const states: WorkerState[] = ["requested", "initializing", "idle", "running", "paused", "unhealthy", "draining", "exited", "lost"];

describe("compactTransitions", () => {
  it("drops the idle ⇄ running flips after the first, keeps what ends a pause", () => {
    const tr = (state: WorkerState, s: number): MeterTransition => ({ seq: `${T + s * 1000}-0`, state });
    const list = [tr("requested", 0), tr("initializing", 1), tr("idle", 2), tr("running", 3), tr("idle", 4), tr("paused", 5), tr("idle", 6), tr("running", 7), tr("exited", 8)];
    expect(compactTransitions([...list].reverse()).map((t) => t.state)).toEqual(["requested", "idle", "paused", "idle", "exited"]);
  });

  it("meters exactly as the whole list, at every point of view (property)", () => {
    const arb = fc.record({
      steps: fc.array(fc.record({ gapMs: fc.integer({ min: 0, max: 40_000 }), state: fc.constantFrom(...states), by: fc.constantFrom(undefined, "worker" as const, "scheduler" as const), atBack: fc.integer({ min: -2000, max: 50_000 }) }), { maxLength: 30 }),
      weights: fc.integer({ min: 0, max: 60_000 }),
      views: fc.array(fc.integer({ min: 0, max: 900_000 }), { minLength: 1, maxLength: 5 }),
      startsWithRequested: fc.boolean(),
    });
    fc.assert(
      fc.property(arb, ({ steps, weights, views, startsWithRequested }) => {
        let ms = T;
        const list: MeterTransition[] = startsWithRequested ? [{ seq: `${T}-0`, state: "requested", gpuType: "AMPERE_80" }] : [];
        steps.forEach((s, i) => {
          ms += s.gapMs;
          list.push({ seq: `${ms}-${i + 1}`, state: s.state, ...(s.state === "lost" && { at: ms - s.atBack }), ...(s.by !== undefined && { by: s.by }) });
        });
        const shuffled = [...list, ...list.slice(0, 3)].reverse();
        const weightsFetches = [{ seq: `${T + 5000}-0`, durationMs: weights }];
        for (const v of views) {
          const whole = meterSession({ workerId: "w", endpointTenantId: "t", transitions: shuffled, weightsFetches }, TABLE, T + v);
          const compact = meterSession({ workerId: "w", endpointTenantId: "t", transitions: compactTransitions(shuffled), weightsFetches }, TABLE, T + v);
          expect({ ...compact, ignored: [] }).toEqual({ ...whole, ignored: [] });
        }
      }),
      { seed: 424242, numRuns: 400 },
    );
  });
});
