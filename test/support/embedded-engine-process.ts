import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { builtEntryPath } from "../../core/build/built-entry.ts";
import { ensureTinyLlamaFile } from "../../core/gguf/tiny-llama-file.ts";
import { freePort, waitFor } from "./services.ts";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
// The build the worker runs (made by the test run's global setup).
const MAIN = builtEntryPath("worker/engines/embedded/main.ts");

export interface EmbeddedEngineProcess {
  /** `http://127.0.0.1:port`, without `/v1`. */
  base: string;
  stop(): Promise<void>;
}

/**
 * The embedded engine as the worker runs it (main.ts in its own process) on the project's tiny
 * gibberish model; resolves once it listens. `--threads 1`: the test runner needs the other core.
 */
export async function startEmbeddedEngine(options: { parallel: number; ctxSize: number }): Promise<EmbeddedEngineProcess> {
  const dir = await mkdtemp(join(tmpdir(), "hearth-embedded-"));
  const model = ensureTinyLlamaFile(join(dir, "tiny-llama.gguf"));
  const port = await freePort();
  const args = ["--model", model, "--host", "127.0.0.1", "--port", String(port), "--parallel", String(options.parallel), "--ctx-size", String(options.ctxSize), "--threads", "1"];
  const child: ChildProcess = spawn(process.execPath, [MAIN, ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on("line", (l) => stdout.push(l));
  createInterface({ input: child.stderr! }).on("line", (l) => stderr.push(l));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`engine exited ${child.exitCode}: ${stderr.join("\n")}`);
      return stdout.some((l) => l.includes('"listening"')) || undefined;
    }, 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  return { base: `http://127.0.0.1:${port}`, stop };
}
