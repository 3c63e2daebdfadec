import { existsSync, readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { isProcessAlive } from "../../../core/fs/real-paths.ts";
import { EngineStartError } from "../engine.ts";
import { RunPodEngine, type RunPodEngineOptions } from "./runpod-engine.ts";

const PYTHON = "/usr/bin/python3";
const handlersDir = fileURLToPath(new URL("../../../test/fixtures/handlers", import.meta.url));
const workerDir = `${handlersDir}/runpod-worker`;

/** The Python processes of a worker: its own and the SDK's ping process (children of it, same command line). */
function pythonPids(file: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSafe("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
      if (cmd[0] === PYTHON && cmd.includes(file) && readFileSync(`/proc/${entry}/environ`, "utf8").includes(`RUNPOD_POD_ID=${workerIdOf(file)}`)) out.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out;
}
const workerIdOf = (file: string) => `w-engine-test-${file.replace(/\W/g, "")}`;
function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

describe.skipIf(!existsSync(PYTHON))("RunPodEngine with a Python worker", () => {
  let engine: RunPodEngine | undefined;
  afterEach(async () => {
    await engine?.stop();
    engine = undefined;
  });

  const make = (file: string, extra: Partial<RunPodEngineOptions> = {}) =>
    new RunPodEngine({
      spec: { kind: "runpod", command: [PYTHON, "-u", file], cwd: workerDir, concurrency: 1, startupTimeoutMs: 30_000 },
      endpointId: "ep-engine-test",
      workerId: workerIdOf(file),
      handlerDirs: [handlersDir],
      endpointEnv: { RUNPOD_SKIP_AUTO_SYSTEM_CHECKS: "true" },
      onLog: () => {},
      ...extra,
    });

  it("is up at its first take, runs a job, and leaves no process behind when stopped", async () => {
    engine = make("handler.py");
    expect(await engine.start()).toEqual({ concurrency: 1, returnAggregateStream: false });
    const result = await engine.run({ id: "j1", input: { hi: 1 } }, new AbortController().signal);
    expect(result).toMatchObject({ kind: "value", value: { echo: { hi: 1 } } });
    expect(await engine.health()).toBe(true);
    expect(pythonPids("handler.py").length).toBeGreaterThan(0);
    await engine.stop();
    engine = undefined;
    expect(pythonPids("handler.py")).toEqual([]);
  });

  it("refuses to start a worker that fails at import, with the exception in the reason", async () => {
    engine = make("crash_on_import.py");
    const err = await engine.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EngineStartError);
    expect((err as Error).message).toMatch(/exited \(code 1\) before its first take: ModuleNotFoundError: No module named 'no_such_module_xyz'/);
    engine = undefined;
  });

  it("declares the worker lost when its pings stop (a frozen process), and kills it", async () => {
    const lost: string[] = [];
    engine = make("handler.py", { pingIntervalMs: 300, onLost: (reason) => void lost.push(reason) });
    await engine.start();
    const pids = pythonPids("handler.py");
    // Freeze the worker and its ping process: alive, silent.
    for (const pid of pids) process.kill(pid, "SIGSTOP");
    const started = Date.now();
    while (lost.length === 0 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 100));
    expect(lost[0]).toMatch(/no ping for \d+ ms/);
    expect(await engine.health()).toBe(false);
    for (const pid of pids) if (isProcessAlive(pid)) process.kill(pid, "SIGKILL");
  });

  it("declares the worker lost when its process dies after start", async () => {
    const lost: string[] = [];
    engine = make("handler.py", { onLost: (reason) => void lost.push(reason) });
    await engine.start();
    const [main] = pythonPids("handler.py").sort((a, b) => a - b);
    process.kill(main!, "SIGKILL");
    const started = Date.now();
    while (lost.length === 0 && Date.now() - started < 10_000) await new Promise((r) => setTimeout(r, 50));
    expect(lost[0]).toMatch(/the worker process exited \(SIGKILL\)/);
  });
});
