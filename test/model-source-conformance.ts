import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ModelSourceError } from "../worker/models/model-source.ts";
import { type ModelStore } from "../worker/models/model-store.ts";

/** What one model source provides to the shared suite. Called inside each test, after the file's `beforeAll`. */
export interface ModelSourceFixture {
  /** A store whose sources include the one under test, caching into `cacheDir`. */
  store(cacheDir: string): ModelStore;
  /** A URI naming one file, and its bytes. */
  file: { uri: string; bytes: Buffer };
  /** A URI naming a directory (or prefix) and its files by relative path; absent where the scheme has none. */
  directory?: { uri: string; files: Record<string, Buffer> };
  /** A URI naming nothing. */
  missing: string;
  /** False for sources that return the original path instead of copying (local files). */
  copies: boolean;
  /** Requests the backing server has answered so far; tells a cache hit from a second download. */
  requests?: () => number;
}

/** Every `ModelSource` runs this suite through a `ModelStore` (STYLE: one conformance suite per seam). */
export function describeModelSourceConformance(name: string, fixture: () => ModelSourceFixture): void {
  describe(`model source conformance: ${name}`, () => {
    const dirs: string[] = [];
    const cacheDir = async () => {
      const dir = await mkdtemp(join(tmpdir(), "hearth-model-cache-"));
      dirs.push(dir);
      return join(dir, "cache");
    };
    afterEach(async () => {
      await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
    });

    it("materialises a single file with its exact bytes", async () => {
      const f = fixture();
      const cache = await cacheDir();
      const path = await f.store(cache).materialise(f.file.uri);
      expect((await stat(path)).isFile()).toBe(true);
      expect(sha256(await readFile(path))).toBe(sha256(f.file.bytes));
      if (f.copies) expect(path.startsWith(cache)).toBe(true);
    });

    it("materialises a directory with every file at its relative path, and nothing else", async (ctx) => {
      const f = fixture();
      if (f.directory === undefined) return ctx.skip();
      const path = await f.store(await cacheDir()).materialise(f.directory.uri);
      expect((await stat(path)).isDirectory()).toBe(true);
      const found: Record<string, string> = {};
      for (const file of await walk(path)) found[relative(path, file)] = sha256(await readFile(file));
      expect(found).toEqual(Object.fromEntries(Object.entries(f.directory.files).map(([rel, bytes]) => [rel, sha256(bytes)])));
    });

    it("rejects a missing model with MODEL_NOT_FOUND and leaves nothing in the cache", async () => {
      const f = fixture();
      const cache = await cacheDir();
      const err = await f.store(cache).materialise(f.missing).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelSourceError);
      expect((err as ModelSourceError).code).toBe("MODEL_NOT_FOUND");
      expect(await cacheContents(cache)).toEqual([]);
    });

    it("reuses a completed model: a second store on the same cache does not fetch again", async () => {
      const f = fixture();
      const cache = await cacheDir();
      const first = await f.store(cache).materialise(f.file.uri);
      const before = f.requests?.();
      const second = await f.store(cache).materialise(f.file.uri);
      expect(second).toBe(first);
      if (before !== undefined) expect(f.requests?.()).toBe(before);
      if (f.copies) {
        // One entry and the URI's ref to it, no partial download beside them.
        expect((await cacheContents(cache)).map((p) => p.split("/")[0])).toEqual(["refs", "sha256"]);
      } else {
        expect(await readdir(cache).catch(() => [])).toEqual([]);
      }
    });

    it("shares one download between concurrent calls for the same model", async () => {
      const f = fixture();
      const store = f.store(await cacheDir());
      const before = f.requests?.() ?? 0;
      const [a, b] = await Promise.all([store.materialise(f.file.uri), store.materialise(f.file.uri)]);
      expect(a).toBe(b);
      if (f.requests) {
        const single = f.requests() - before;
        const fresh = f.store(await cacheDir());
        const mark = f.requests();
        await fresh.materialise(f.file.uri);
        expect(single).toBe(f.requests() - mark);
      }
    });
  });
}

/**
 * What a cache directory holds that a worker could be handed or that takes space: entries
 * (`sha256/<digest>`), refs and partial downloads, as `dir/name` sorted. Empty lock and lease
 * directories are bookkeeping, not content.
 */
export async function cacheContents(cache: string): Promise<string[]> {
  const out: string[] = [];
  for (const dir of ["partial", "refs", "sha256"]) {
    for (const name of await readdir(join(cache, dir)).catch(() => [] as string[])) out.push(`${dir}/${name}`);
  }
  return out.sort();
}

export function sha256(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(path)));
    else out.push(path);
  }
  return out;
}
