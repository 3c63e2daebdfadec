import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { processLog, withFields } from "./process-log.ts";

function collector() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  return { destination, lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe("the process log (pino)", () => {
  it("writes one JSON line per entry with the level's name, ISO time, component, pid and the process's fields", () => {
    const c = collector();
    const log = processLog("worker", { destination: c.destination, fields: { workerId: "w-1" } });
    log({ msg: "ready", ms: 12 });
    log({ level: "error", msg: "heartbeat failed", error: "ECONNREFUSED" });
    expect(c.json()).toEqual([
      { level: "info", time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/), component: "worker", pid: process.pid, workerId: "w-1", ms: 12, msg: "ready" },
      { level: "error", time: expect.any(String), component: "worker", pid: process.pid, workerId: "w-1", error: "ECONNREFUSED", msg: "heartbeat failed" },
    ]);
  });

  it("drops what is below HEARTH_LOG_LEVEL's level, and everything when silent", () => {
    const c = collector();
    const log = processLog("api", { destination: c.destination, level: "warn" });
    log({ level: "debug", msg: "a" });
    log({ msg: "b" });
    log({ level: "warn", msg: "c" });
    log({ level: "fatal", msg: "d" });
    expect(c.json().map((l) => l.msg)).toEqual(["c", "d"]);
    const quiet = collector();
    processLog("api", { destination: quiet.destination, level: "silent" })({ level: "fatal", msg: "x" });
    expect(quiet.lines).toEqual([]);
  });

  it("keeps hostile values one valid JSON line each: newlines, NUL, lone surrogates, deep nesting", () => {
    const c = collector();
    const log = processLog("api", { destination: c.destination });
    let deep: unknown = "bottom";
    for (let i = 0; i < 200; i++) deep = { deep };
    log({ msg: "line1\nline2", value: "a\u0000b\ud800c", deep });
    expect(c.lines).toHaveLength(1);
    const parsed = c.json()[0]!;
    expect(parsed.msg).toBe("line1\nline2");
    expect(parsed.value).toBe("a\u0000b\ud800c");
  });

  it("adds fields to every line of a child, the entry's own winning", () => {
    const c = collector();
    const job = withFields(processLog("worker", { destination: c.destination }), { jobId: "j-1", traceId: "t" });
    job({ msg: "job finished", traceId: "t2" });
    expect(c.json()[0]).toMatchObject({ jobId: "j-1", traceId: "t2", msg: "job finished" });
  });
});
