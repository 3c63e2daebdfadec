import { spawn, type ChildProcess } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import type { LogLine } from "../../core/log/process-log.ts";
import { PrestartedWorkers } from "./prestarted-workers.ts";

const pools: PrestartedWorkers[] = [];
afterEach(() => {
  for (const p of pools.splice(0)) p.close();
});

async function until(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("PrestartedWorkers when spares cannot boot", () => {
  // A real process that dies at once, as a worker does under a broken build or a bad NODE_OPTIONS.
  it("stops booting spares after three failed boots in a row, says so once, and spawns no more", async () => {
    const logs: LogLine[] = [];
    const spawned: ChildProcess[] = [];
    const pool = new PrestartedWorkers({
      count: 1,
      baseEnv: () => ({}),
      log: (l) => logs.push(l),
      spawn: (env) => {
        const child = spawn(process.execPath, ["-e", "console.error('boot failed'); process.exit(3)"], { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe", "ipc"] });
        spawned.push(child);
        return child;
      },
    });
    pools.push(pool);
    const stopped = () => logs.filter((l) => l.msg === "prestarted workers stopped: their boots keep failing; workers are spawned afresh");

    // Boots at 0, then after 1 s and 2 s of back-off; the third failure stops the pool.
    await until(() => stopped().length === 1);
    expect(spawned).toHaveLength(3);
    expect(logs.filter((l) => l.msg === "prestarted worker exited before it was used")).toHaveLength(3);
    expect(String(logs.find((l) => l.msg === "prestarted worker exited before it was used")?.output)).toContain("boot failed");
    expect(String(stopped()[0]!.reason)).toContain("exited 3");

    // Without the stop, a fourth boot would come 3 s after the third failure.
    await new Promise((r) => setTimeout(r, 3_500));
    expect(spawned).toHaveLength(3);
    expect(stopped()).toHaveLength(1);
    // Nothing is waiting to be taken: starts spawn afresh.
    expect(pool.take({})).toBeUndefined();
  }, 30_000);
});
