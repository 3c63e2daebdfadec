import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { readGguf } from "../../../core/gguf/gguf-reader.ts";
import { tinyLlamaGguf } from "../../../core/gguf/tiny-llama.ts";
import { EngineSupervisor, type SupervisorState } from "./engine-supervisor.ts";
import { freePort, waitFor } from "../../../test/support/services.ts";

const llamaServer = process.env.HEARTH_LLAMA_SERVER ?? "/var/cache/hearth/llama-build/bin/llama-server";
const vocabPath = fileURLToPath(new URL("../../../core/gguf/vocab/ggml-vocab-llama-spm.gguf", import.meta.url));

describe("EngineSupervisor", () => {
  const supervisors: EngineSupervisor[] = [];
  afterEach(async () => {
    for (const s of supervisors.splice(0)) await s.stop();
  });

  it("fails a start whose engine never becomes healthy, and kills it", async () => {
    const states: SupervisorState[] = [];
    const s = new EngineSupervisor({
      engine: { command: "sleep", args: ["60"], port: await freePort(), healthPath: "/health" },
      startupTimeoutMs: 500,
      onState: (st) => states.push(st),
      onLog: () => {},
    });
    supervisors.push(s);
    await expect(s.start()).rejects.toThrow(/not healthy within 500 ms/);
    await waitFor(() => s.lost.aborted);
    expect(states).toEqual(["starting"]);
  });

  it("fails a start whose engine exits, saying how", async () => {
    const s = new EngineSupervisor({ engine: { command: "sh", args: ["-c", "echo boom >&2; exit 3"], port: await freePort(), healthPath: "/health" }, onLog: () => {} });
    supervisors.push(s);
    await expect(s.start()).rejects.toThrow(/exited \(code 3\)/);
  });

  it.skipIf(!existsSync(llamaServer))("keeps llama-server serving: a killed engine aborts its requests, restarts, and serves again", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hearth-sup-"));
    const model = join(dir, "tiny.gguf");
    writeFileSync(model, tinyLlamaGguf(readGguf(readFileSync(vocabPath))));
    const port = await freePort();
    const states: SupervisorState[] = [];
    const s = new EngineSupervisor({
      engine: { command: llamaServer, args: ["-m", model, "--host", "127.0.0.1", "--port", String(port), "-c", "256"], port, healthPath: "/health" },
      restartBaseMs: 100,
      onState: (st) => states.push(st),
      onLog: () => {},
    });
    supervisors.push(s);
    await s.start();
    // Greedy on a prompt llama-server answers whole: its output parser fails some random gibberish with a 500.
    const complete = () =>
      fetch(`${s.baseUrl}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "The cat", max_tokens: 4, temperature: 0 }) }).then(
        (r) => r.json() as Promise<{ usage: { completion_tokens: number } }>,
      );
    expect((await complete()).usage.completion_tokens).toBe(4);

    const firstPid = s.pid!;
    const lost = s.lost;
    process.kill(firstPid, "SIGKILL");
    await waitFor(() => lost.aborted);
    expect(String(lost.reason)).toMatch(/SIGKILL/);
    await waitFor(() => s.current === "ready" && s.pid !== firstPid);
    expect(states).toEqual(["starting", "ready", "unhealthy", "starting", "ready"]);
    expect((await complete()).usage.completion_tokens).toBe(4);
  });
});
