import { afterEach, describe, expect, it } from "vitest";
import type { ProvidedWorker, Provider, WorkerSpec } from "../scheduler/providers/provider.ts";
import { waitFor } from "./support/services.ts";

export interface ConformanceOptions {
  /** Drain allowance the suite passes to `stop`. Default 20_000. */
  graceMs?: number;
}

/**
 * What every provider must do, run against each (local processes, Kubernetes pods…). `makeSpec` must
 * return a spec with a fresh `workerId` on every call, for a worker that boots and drains on its own.
 */
export function describeProviderConformance(
  name: string,
  makeProvider: () => Provider | Promise<Provider>,
  makeSpec: () => WorkerSpec | Promise<WorkerSpec>,
  options: ConformanceOptions = {},
): void {
  const graceMs = options.graceMs ?? 20_000;

  describe(`provider conformance: ${name}`, () => {
    const open: Provider[] = [];
    const provider = async () => {
      const p = await makeProvider();
      open.push(p);
      return p;
    };
    const recordExits = (p: Provider) => {
      const exits: ProvidedWorker[] = [];
      p.onExit((w) => exits.push(w));
      return exits;
    };
    afterEach(async () => {
      await Promise.all(open.splice(0).map((p) => p.close()));
    });

    it("start → list shows it running → stop → exit reported → gone from list", async () => {
      const p = await provider();
      const exits = recordExits(p);
      const spec = await makeSpec();
      const before = Date.now();

      const started = await p.start(spec);
      expect(started).toMatchObject({ workerId: spec.workerId, endpointId: spec.endpointId, state: "running" });
      expect(started.startedAt).toBeGreaterThanOrEqual(before - 1000);
      expect(p.list()).toEqual([expect.objectContaining({ workerId: spec.workerId, endpointId: spec.endpointId, state: "running" })]);

      await p.stop(spec.workerId, { graceMs });
      // `stop` resolves only after the exit has been reported.
      expect(exits).toHaveLength(1);
      expect(exits[0]).toMatchObject({ workerId: spec.workerId, endpointId: spec.endpointId, state: "exited" });
      expect(typeof exits[0]?.exitCode).toBe("number");
      expect(p.list()).toEqual([]);
    });

    it("stop is idempotent and a no-op for unknown workers", async () => {
      const p = await provider();
      const exits = recordExits(p);
      const spec = await makeSpec();
      await p.start(spec);
      await Promise.all([p.stop(spec.workerId, { graceMs }), p.stop(spec.workerId, { graceMs })]);
      await p.stop(spec.workerId, { graceMs });
      await p.stop("w-doesnotexist", { graceMs });
      expect(exits.map((w) => w.workerId)).toEqual([spec.workerId]);
    });

    it("refuses a second worker under a running worker's id", async () => {
      const p = await provider();
      const spec = await makeSpec();
      await p.start(spec);
      await expect(p.start(spec)).rejects.toThrow();
      expect(p.list()).toHaveLength(1);
    });

    it("close stops every worker, reports each exit, leaves nothing and refuses new starts", async () => {
      const p = await provider();
      const exits = recordExits(p);
      const a = await makeSpec();
      const b = await makeSpec();
      await Promise.all([p.start(a), p.start(b)]);
      expect(p.list().map((w) => w.workerId).sort()).toEqual([a.workerId, b.workerId].sort());

      await p.close();
      expect(p.list()).toEqual([]);
      expect(exits.map((w) => w.workerId).sort()).toEqual([a.workerId, b.workerId].sort());
      await expect(p.start(await makeSpec())).rejects.toThrow();
    });

    it("stops telling a listener once it unsubscribes", async () => {
      const p = await provider();
      const heard: string[] = [];
      const unsubscribe = p.onExit((w) => heard.push(w.workerId));
      const first = await makeSpec();
      await p.start(first);
      await p.stop(first.workerId, { graceMs });
      unsubscribe();
      const second = await makeSpec();
      await p.start(second);
      await p.stop(second.workerId, { graceMs });
      await waitFor(() => p.list().length === 0);
      expect(heard).toEqual([first.workerId]);
    });
  });
}
