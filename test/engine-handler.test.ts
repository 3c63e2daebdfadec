import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { EngineStartError, type EngineResult } from "../worker/engines/engine.ts";
import { HandlerEngine } from "../worker/engines/handler-engine.ts";
import { createEngine } from "../worker/engines/create-engine.ts";
import { FileModelSource } from "../worker/models/file-model-source.ts";
import { ModelStore } from "../worker/models/model-store.ts";
import { describeEngineConformance } from "./engine-conformance.ts";

const fixtures = fileURLToPath(new URL("./fixtures/handlers", import.meta.url));
const examples = fileURLToPath(new URL("../images/handler/examples", import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "hearth-engine-"));
const outside = mkdtempSync(join(tmpdir(), "hearth-outside-"));
const dirs = [fixtures, examples, scratch];
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});

const handler = (module: string, handlerDirs: string[] = dirs) => new HandlerEngine({ module, handlerDirs });

describeEngineConformance("handler", {
  value: async () => ({ engine: handler(join(examples, "echo.mjs")), input: { a: [1, 2] }, expected: { echo: { a: [1, 2] } } }),
  stream: async () => ({ engine: handler(join(examples, "stream.mjs")), input: { count: 3 }, expectedChunks: ["token-0", "token-1", "token-2"] }),
  abortable: async () => {
    const marker = join(scratch, `abort-${Math.random().toString(36).slice(2)}`);
    return {
      engine: handler(join(fixtures, "sleep.mjs")),
      input: { ms: 60_000, abortMarker: marker },
      abortObserved: async () => existsSync(marker),
    };
  },
});

function module(name: string, source: string, dir = scratch): string {
  const path = join(dir, name);
  writeFileSync(path, source);
  return path;
}

async function collect(r: EngineResult): Promise<unknown> {
  if (r.kind === "value") return r;
  const out: unknown[] = [];
  for await (const c of r.chunks) out.push(c);
  return { kind: "stream", chunks: out };
}

describe("handler engine: module path is checked before anything is imported", () => {
  it("refuses a module outside the allowed directories", async () => {
    const path = module("evil.mjs", "export default () => 1;", outside);
    await expect(handler(path).start()).rejects.toThrow(/outside the directories/);
    await expect(handler(path).start()).rejects.toBeInstanceOf(EngineStartError);
  });

  it("refuses a `..` escape", async () => {
    await expect(handler(`${examples}/../../../package.json`).start()).rejects.toThrow(EngineStartError);
    await expect(handler(`${fixtures}/../../../worker/main.ts`).start()).rejects.toThrow(/outside the directories/);
  });

  it("refuses a symlink inside an allowed directory that points outside", async () => {
    const target = module("target.mjs", "export default () => 'escaped';", outside);
    const link = join(scratch, "link.mjs");
    symlinkSync(target, link);
    await expect(handler(link).start()).rejects.toThrow(/outside the directories/);
  });

  it("refuses relative paths, missing files and modules without a default function", async () => {
    await expect(handler("echo.mjs").start()).rejects.toThrow(/absolute/);
    await expect(handler(join(examples, "missing.mjs")).start()).rejects.toThrow(/does not exist/);
    const noDefault = module("no-default.mjs", "export const concurrency = 2;");
    await expect(handler(noDefault).start()).rejects.toThrow(/default export must be a function/);
    const badConcurrency = module("bad-concurrency.mjs", "export default () => 1; export const concurrency = 0;");
    await expect(handler(badConcurrency).start()).rejects.toThrow(/concurrency/);
    const broken = module("broken.mjs", "throw new Error('top-level boom');");
    await expect(handler(broken).start()).rejects.toThrow(/failed to load: top-level boom/);
  });

  it("accepts a file:// URL and reads the optional exports", async () => {
    const concurrent = handler(pathToFileURL(join(fixtures, "concurrent.mjs")).href);
    expect(await concurrent.start()).toEqual({ concurrency: 4, returnAggregateStream: false });
    const agg = module("agg.mjs", "export const returnAggregateStream = true; export default async function* () { yield 1; }");
    expect(await handler(agg).start()).toEqual({ concurrency: 1, returnAggregateStream: true });
    const engine = await createEngine({ kind: "handler", module: join(fixtures, "concurrent.mjs") }, { handlerDirs: dirs, endpointId: "ep", workerId: "w", models: new ModelStore({ cacheDir: scratch, sources: [new FileModelSource({ allowedDirs: [scratch] })] }) });
    expect((await engine.start()).concurrency).toBe(4);
  });
});

describe("handler engine: what counts as a stream", () => {
  it("treats a function returning an async iterable, and a sync generator, as streams; arrays as values", async () => {
    const returnsIterable = module(
      "returns-iterable.mjs",
      "export default async (job) => ({ async *[Symbol.asyncIterator]() { yield job.input; yield 'done'; } });",
    );
    const syncGen = module("sync-gen.mjs", "export default function* (job) { yield 1; yield job.input; }");
    const array = module("array.mjs", "export default () => [1, 2, 3];");
    const run = async (path: string) => {
      const e = handler(path);
      await e.start();
      return collect(await e.run({ id: "j", input: "x" }, new AbortController().signal));
    };
    expect(await run(returnsIterable)).toEqual({ kind: "stream", chunks: ["x", "done"] });
    expect(await run(syncGen)).toEqual({ kind: "stream", chunks: [1, "x"] });
    expect(await run(array)).toEqual({ kind: "value", value: [1, 2, 3] });
  });

  it("passes the job as { id, input } and the signal in the second argument", async () => {
    const path = module("shape.mjs", "export default (job, ctx) => ({ keys: Object.keys(job), id: job.id, signal: ctx.signal instanceof AbortSignal });");
    const e = handler(path);
    await e.start();
    expect(await e.run({ id: "j1", input: null }, new AbortController().signal)).toEqual({
      kind: "value",
      value: { keys: ["id", "input"], id: "j1", signal: true },
    });
  });
});
