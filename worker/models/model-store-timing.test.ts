import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FileModelSource } from "./file-model-source.ts";
import { type DownloadHooks, type ModelSource } from "./model-source.ts";
import { ModelStore } from "./model-store.ts";

/**
 * A source for `test:` URIs whose downloads the test finishes by hand, on a clock the test moves:
 * `weightsFetchMs` is then exact.
 */
class ManualSource implements ModelSource {
  readonly schemes = ["test:"] as const;
  readonly pending = new Map<string, { finish: () => void; fail: () => void }>();

  async materialise(uri: URL, destDir: string): Promise<string> {
    await mkdir(destDir, { recursive: true });
    const file = join(destDir, "model.bin");
    await new Promise<void>((resolve, reject) => this.pending.set(uri.pathname, { finish: resolve, fail: () => reject(new Error("cut")) }));
    await writeFile(file, uri.pathname);
    return file;
  }

  /** Resolves once a download of `name` is waiting to be finished. */
  async started(name: string): Promise<{ finish: () => void; fail: () => void }> {
    for (;;) {
      const p = this.pending.get(name);
      if (p) return p;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hearth-store-timing-"));
  await writeFile(join(root, "local.gguf"), "weights");
});
afterAll(async () => rm(root, { recursive: true, force: true }));

function storeWith(dir: string) {
  let now = 1000;
  const source = new ManualSource();
  const store = new ModelStore({ cacheDir: join(root, dir), sources: [source, new FileModelSource({ allowedDirs: [root] })], clock: () => now });
  return { store, source, advance: (ms: number) => (now += ms) };
}

describe("ModelStore.weightsFetchMs", () => {
  it("is undefined until a model is asked for, and counts a download while it runs and once done", async () => {
    const { store, source, advance } = storeWith("one");
    expect(store.weightsFetchMs).toBeUndefined();
    const path = store.materialise("test:/a");
    const a = await source.started("/a");
    advance(700);
    expect(store.weightsFetchMs).toBe(700);
    advance(800);
    a.finish();
    await path;
    advance(5000); // after the fetch: engine load and the rest are not the fetch
    expect(store.weightsFetchMs).toBe(1500);
    // A cache hit (and a local file) costs nothing on this clock.
    await store.materialise("test:/a");
    await store.materialise(join(root, "local.gguf"));
    expect(store.weightsFetchMs).toBe(1500);
  });

  it("adds sequential fetches (failed ones too) and counts overlapping ones once", async () => {
    const { store, source, advance } = storeWith("many");
    const a = store.materialise("test:/a");
    const b = store.materialise("test:/b");
    const [fa, fb] = [await source.started("/a"), await source.started("/b")];
    advance(1000);
    fa.finish();
    await a;
    advance(500);
    fb.finish();
    await b;
    expect(store.weightsFetchMs).toBe(1500);

    advance(10_000);
    const c = store.materialise("test:/c");
    const fc = await source.started("/c");
    advance(300);
    fc.fail();
    await expect(c).rejects.toMatchObject({ code: "MODEL_FETCH_FAILED" });
    expect(store.weightsFetchMs).toBe(1800);
  });

  it("is a local file's real (small) cost on the default monotonic clock", async () => {
    const store = new ModelStore({ cacheDir: join(root, "real"), sources: [new FileModelSource({ allowedDirs: [root] })] });
    await store.materialise(join(root, "local.gguf"));
    expect(store.weightsFetchMs).toBeGreaterThanOrEqual(0);
    expect(store.weightsFetchMs).toBeLessThan(1000);
  });
});

/** A `prog:` source that reports its size and some bytes, then waits for the test. */
class ProgressSource implements ModelSource {
  readonly schemes = ["prog:"] as const;
  finish: (() => void) | undefined;

  async materialise(uri: URL, destDir: string, _signal?: AbortSignal, hooks?: DownloadHooks): Promise<string> {
    await mkdir(destDir, { recursive: true });
    await hooks?.expectBytes?.(10);
    hooks?.onBytes?.(4);
    await new Promise<void>((resolve) => (this.finish = resolve));
    hooks?.onBytes?.(6);
    const file = join(destDir, "model.bin");
    await writeFile(file, "0123456789");
    return file;
  }
}

describe("ModelStore.fetchProgress", () => {
  it("shows the bytes of a download in flight and its size, and nothing once it is done", async () => {
    const source = new ProgressSource();
    const store = new ModelStore({ cacheDir: join(root, "progress"), sources: [source] });
    expect(store.fetchProgress).toBeUndefined();
    const path = store.materialise("prog:/m");
    while (!source.finish) await new Promise((r) => setTimeout(r, 5));
    expect(store.fetchProgress).toEqual({ bytes: 4, totalBytes: 10 });
    source.finish();
    await path;
    expect(store.fetchProgress).toBeUndefined();
  });
});
