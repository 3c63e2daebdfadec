import { isProcessAlive } from "../../core/fs/real-paths.ts";
import { createHash, randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { z } from "zod";

/**
 * Turns an endpoint's `model` URI into a local path an engine can open. One implementation per
 * URI scheme; `ModelStore` picks one and makes its result durable.
 */
export interface ModelSource {
  /** URL protocols it handles, with the colon, as `URL.protocol` spells them: `["s3:"]`. */
  readonly schemes: readonly string[];
  /**
   * Fetches `uri` below `destDir` (which does not exist yet; the source creates it) and returns the
   * path of the file or directory it wrote there, never `destDir` itself. A source that needs no
   * copy (a local file) returns a path outside `destDir` and writes nothing. Rejects with a
   * `ModelSourceError`; whatever it left in `destDir` is removed by the store.
   */
  materialise(uri: URL, destDir: string, signal?: AbortSignal): Promise<string>;
  /**
   * Refuses (MODEL_SOURCE_FORBIDDEN) a URI this source may not fetch. The store asks before it
   * looks in its cache, so a model cached earlier is not handed out past a policy that now refuses it.
   */
  authorize?(uri: URL): Promise<void>;
  /**
   * Set when what this source may read depends on whose credentials it holds: mixed into the cache
   * key, so a model fetched with one tenant's credentials is never served to a worker without them.
   */
  readonly cacheScope?: string;
}

export type ModelErrorCode =
  | "MODEL_URI_INVALID"
  | "MODEL_SCHEME_UNSUPPORTED"
  | "MODEL_NOT_FOUND"
  | "MODEL_FETCH_FAILED"
  | "MODEL_FETCH_ABORTED"
  | "MODEL_CACHE_CONFLICT"
  | "MODEL_SOURCE_FORBIDDEN";

/**
 * Why a model could not be made local. `MODEL_NOT_FOUND` is permanent for that URI; `MODEL_FETCH_FAILED`
 * may pass; `MODEL_SOURCE_FORBIDDEN` is the operator's policy (HEARTH_MODEL_DIRS, HEARTH_MODEL_ALLOWLIST,
 * private addresses) refusing where the model is or where a download would connect.
 */
export class ModelSourceError extends Error {
  constructor(
    readonly code: ModelErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "ModelSourceError";
  }
}

/** A URI fit for logs and error messages: no user info and no query (presigned URLs carry signatures there). */
export function redactUri(uri: URL): string {
  if (uri.protocol === "file:") return uri.pathname;
  return `${uri.protocol}//${uri.host}${uri.pathname}`;
}

/** The cache directory name for a model URI: stable across processes and hosts. */
export function cacheKey(uri: string): string {
  return createHash("sha256").update(uri).digest("hex").slice(0, 16);
}

/** What a completed cache entry records next to the model; written before the entry is renamed into place. */
const manifestSchema = z.object({ uri: z.string(), path: z.string().min(1), completedAt: z.string() });
const MANIFEST = ".hearth-model.json";

export interface ModelStoreOptions {
  /** Directory holding one entry per model URI (`<cacheDir>/<sha256(uri)[0..16]>/`); created on first use. */
  cacheDir: string;
  sources: ModelSource[];
  /** Monotonic clock, ms, that `weightsFetchMs` is measured on. Default `performance.now`. */
  clock?: () => number;
}

/**
 * Local copies of models, one directory per URI. A download goes to `<key>.partial-<host>-<pid>-<rand>`
 * and becomes `<key>` by one rename once complete, so a crash never leaves a half model that a later
 * start takes as whole; the next materialise of that URI on the same host removes such leftovers.
 * A completed entry is reused without asking the source again. Concurrent calls for one URI in this
 * process share one download (and the first caller's abort signal); two processes may both download,
 * and the second to finish keeps the first one's entry.
 */
export class ModelStore {
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly clock: () => number;
  private fetching = 0;
  private busySince = 0;
  private fetchedMs: number | undefined;
  /** Models asked for that the cache held, and that it did not (a cold start's `cacheHit`). */
  private hits = 0;
  private misses = 0;

  constructor(private readonly options: ModelStoreOptions) {
    this.clock = options.clock ?? (() => performance.now());
  }

  /**
   * Whole ms spent making models local (download or cache fill; a cache hit or a local file costs
   * about nothing), failed attempts included: the time at least one fetch was in flight, so fetches
   * that overlap count once and sequential ones add up. Undefined until a model was asked for (a
   * handler worker never does). Billing does not charge this span (the worker reports it).
   */
  get weightsFetchMs(): number | undefined {
    if (this.fetchedMs === undefined) return undefined;
    const current = this.fetching > 0 ? this.clock() - this.busySince : 0;
    return Math.round(this.fetchedMs + current);
  }

  /** True while a model is being made local (the worker's boot phase `weights_fetch`). */
  get fetchingNow(): boolean {
    return this.fetching > 0;
  }

  /** True when every model asked for came from the cache; undefined until one was asked for. */
  get cacheHit(): boolean | undefined {
    return this.hits + this.misses === 0 ? undefined : this.misses === 0;
  }

  /** A local path (file or directory) holding the model named by `uri` (a URL or an absolute path). */
  async materialise(uri: string, signal?: AbortSignal): Promise<string> {
    const url = parseModelUri(uri);
    const source = this.options.sources.find((s) => s.schemes.includes(url.protocol));
    if (source === undefined) {
      const known = this.options.sources.flatMap((s) => s.schemes).join(", ");
      throw new ModelSourceError("MODEL_SCHEME_UNSUPPORTED", `no model source for ${url.protocol} (known: ${known})`);
    }
    await source.authorize?.(url);
    const key = cacheKey(source.cacheScope === undefined ? url.href : `${source.cacheScope}\n${url.href}`);
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      pending = this.timed(() => this.fetch(url, source, key, signal)).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /** Runs one fetch; `weightsFetchMs` grows while any fetch is in flight. */
  private async timed<T>(work: () => Promise<T>): Promise<T> {
    if (this.fetching++ === 0) this.busySince = this.clock();
    this.fetchedMs ??= 0;
    try {
      return await work();
    } finally {
      if (--this.fetching === 0) this.fetchedMs += this.clock() - this.busySince;
    }
  }

  private async fetch(url: URL, source: ModelSource, key: string, signal: AbortSignal | undefined): Promise<string> {
    const { cacheDir } = this.options;
    const entry = join(cacheDir, key);
    const cached = await readEntry(entry, url.href);
    if (cached !== undefined) {
      this.hits++;
      return cached;
    }
    this.misses++;

    const created = await mkdir(cacheDir, { recursive: true });
    if (created !== undefined) await openDirs(created, cacheDir);
    await removeDeadPartials(cacheDir, key);
    const partial = join(cacheDir, `${key}.partial-${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`);
    try {
      signal?.throwIfAborted();
      const produced = await source.materialise(url, partial, signal);
      const rel = relative(partial, produced);
      if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) {
        // Nothing was copied (a local file): the source's path is the model.
        await rm(partial, { recursive: true, force: true });
        return produced;
      }
      await writeFile(join(partial, MANIFEST), JSON.stringify({ uri: url.href, path: rel, completedAt: new Date().toISOString() }));
      await makeReadable(partial);
      return await commit(partial, entry, url.href, rel);
    } catch (err) {
      await rm(partial, { recursive: true, force: true });
      if (signal?.aborted) throw new ModelSourceError("MODEL_FETCH_ABORTED", `fetching ${redactUri(url)} was aborted`, { cause: err });
      if (err instanceof ModelSourceError) throw err;
      throw new ModelSourceError("MODEL_FETCH_FAILED", `fetching ${redactUri(url)} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * Engines run as another, unprivileged user (HEARTH_ENGINE_USER) and must read what this process
 * wrote: directories 0755, files 0644, whatever this process's umask. Models are not secrets
 * from the engines on this host (every engine runs as that one user).
 */
async function makeReadable(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isSymbolicLink()) return;
  if (!st.isDirectory()) return chmod(path, 0o644);
  await chmod(path, 0o755);
  for (const name of await readdir(path)) await makeReadable(join(path, name));
}

/** The directories `mkdir -p` created, from `first` down to `last`, made searchable by the engine user. */
async function openDirs(first: string, last: string): Promise<void> {
  for (let dir = last; ; dir = dirname(dir)) {
    await chmod(dir, 0o755);
    if (dir === first || dirname(dir) === dir) return;
  }
}

function parseModelUri(uri: string): URL {
  if (isAbsolute(uri)) return pathToFileURL(uri);
  try {
    return new URL(uri);
  } catch {
    throw new ModelSourceError("MODEL_URI_INVALID", "model must be an absolute path or a URL (file://, s3://, https://)");
  }
}

/** The model path of a completed entry, or undefined when there is none (or it was damaged, and is removed). */
async function readEntry(entry: string, uri: string): Promise<string | undefined> {
  let raw: string;
  try {
    raw = await readFile(join(entry, MANIFEST), "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") throw err;
    // No manifest: nothing here, or not something this store wrote; either way not a model.
    await rm(entry, { recursive: true, force: true });
    return undefined;
  }
  const manifest = manifestSchema.safeParse(parseJson(raw));
  if (manifest.success && manifest.data.uri !== uri) {
    throw new ModelSourceError("MODEL_CACHE_CONFLICT", `cache entry ${entry} holds another model (${manifest.data.uri})`);
  }
  const path = manifest.success ? join(entry, manifest.data.path) : undefined;
  if (path !== undefined && (await stat(path).catch(() => undefined)) !== undefined) return path;
  // Files deleted behind our back (a disk cleaner, a person): download again rather than serve a hole.
  await rm(entry, { recursive: true, force: true });
  return undefined;
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

/** Renames a finished partial into place; if another process got there first, keeps theirs. */
async function commit(partial: string, entry: string, uri: string, rel: string): Promise<string> {
  try {
    await rename(partial, entry);
    return join(entry, rel);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
    const theirs = await readEntry(entry, uri);
    if (theirs === undefined) throw err;
    await rm(partial, { recursive: true, force: true });
    return theirs;
  }
}

/**
 * Removes partial downloads of `key` left by dead processes on this host. Only this host's: a pid
 * means nothing across containers sharing one cache volume, and their downloads may be running.
 */
async function removeDeadPartials(cacheDir: string, key: string): Promise<void> {
  const prefix = `${key}.partial-${hostname()}-`;
  for (const name of await readdir(cacheDir)) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid !== process.pid && !isProcessAlive(pid)) await rm(join(cacheDir, name), { recursive: true, force: true });
  }
}
