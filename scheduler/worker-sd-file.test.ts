import { mkdtemp, readdir, readFile, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { LogLine } from "../core/log/process-log.ts";
import { fileSdJson, WorkerSdFile } from "./worker-sd-file.ts";

const dirs: string[] = [];
afterAll(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
const tempDir = async () => {
  const d = await mkdtemp(join(tmpdir(), "hearth-sd-"));
  dirs.push(d);
  return d;
};
const read = async (path: string): Promise<unknown> => JSON.parse(await readFile(path, "utf8"));

describe("fileSdJson", () => {
  it("writes one target group per worker, on loopback, labelled with its endpoint and worker, in worker order", () => {
    const text = fileSdJson([
      { endpointId: "ep2", workerId: "w-b", port: 40002 },
      { endpointId: "ep1", workerId: "w-a", port: 40001 },
    ]);
    expect(JSON.parse(text)).toEqual([
      { targets: ["127.0.0.1:40001"], labels: { endpoint: "ep1", worker: "w-a" } },
      { targets: ["127.0.0.1:40002"], labels: { endpoint: "ep2", worker: "w-b" } },
    ]);
    expect(fileSdJson([])).toBe("[]\n");
  });
});

describe("WorkerSdFile", () => {
  it("writes the empty list at first, replaces an endpoint's targets, drops an exited worker, and leaves no temporary file", async () => {
    const dir = await tempDir();
    const path = join(dir, "workers.json");
    await writeFile(path, "left by an earlier run");
    const lines: LogLine[] = [];
    const sd = new WorkerSdFile({ path, log: (l) => lines.push(l) });
    await sd.flush();
    expect(await read(path)).toEqual([]);

    sd.setEndpoint("ep1", [{ workerId: "w1", port: 41001 }, { workerId: "w2", port: 41002 }]);
    sd.setEndpoint("ep2", [{ workerId: "w3", port: 41003 }]);
    await sd.flush();
    expect(await read(path)).toEqual([
      { targets: ["127.0.0.1:41001"], labels: { endpoint: "ep1", worker: "w1" } },
      { targets: ["127.0.0.1:41002"], labels: { endpoint: "ep1", worker: "w2" } },
      { targets: ["127.0.0.1:41003"], labels: { endpoint: "ep2", worker: "w3" } },
    ]);

    // ep1's next converge sees only w2; w3 exits.
    sd.setEndpoint("ep1", [{ workerId: "w2", port: 41002 }]);
    sd.remove("w3");
    await sd.flush();
    expect(await read(path)).toEqual([{ targets: ["127.0.0.1:41002"], labels: { endpoint: "ep1", worker: "w2" } }]);
    expect(await readdir(dir)).toEqual(["workers.json"]);
    expect(lines).toEqual([]);
  });

  it("logs a write it cannot make, once, never throws, and writes once the path becomes writable", async () => {
    const dir = await tempDir();
    const path = join(dir, "missing", "workers.json");
    const lines: LogLine[] = [];
    const sd = new WorkerSdFile({ path, log: (l) => lines.push(l) });
    sd.setEndpoint("ep1", [{ workerId: "w1", port: 41001 }]);
    await sd.flush();
    sd.setEndpoint("ep1", [{ workerId: "w1", port: 41001 }]);
    await sd.flush();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "warn", msg: "worker service discovery file not written", path, code: "ENOENT" });

    await mkdir(join(dir, "missing"));
    // The next converge retries, though the set did not change.
    sd.setEndpoint("ep1", [{ workerId: "w1", port: 41001 }]);
    await sd.flush();
    expect(await read(path)).toEqual([{ targets: ["127.0.0.1:41001"], labels: { endpoint: "ep1", worker: "w1" } }]);
  });
});
