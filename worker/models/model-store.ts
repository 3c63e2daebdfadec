import { createHash, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { isProcessAlive } from "../../core/fs/real-paths.ts";
import type { Log } from "../../core/log/process-log.ts";
import { directoryDigest, fragmentSha256, SHA256_HEX } from "../../core/weights/model-digest.ts";
import { entryManifest, MANIFEST, parseJson, refSchema } from "./cache-layout.ts";
import { DownloadProgress } from "./download-progress.ts";
import { acquireHostLock, Leases } from "./host-lock.ts";
import { cacheKey, ModelSourceError, redactUri, type DownloadHooks, type ModelSource } from "./model-source.ts";
import { WeightsBudget } from "./weights-budget.ts";

export interface ModelStoreOptions {
  /** HEARTH_MODEL_CACHE_DIR; created on first use. Layout: see README "Weights cache". */
  cacheDir: string;
  sources: ModelSource[];
  /** HEARTH_MODEL_CACHE_BYTES: what completed entries may hold together; least recently used ones are evicted beyond it. Default: no limit. */
  budgetBytes?: number;
  /** Progress and cache events. Default: none. */
  log?: Log;
  /** Least ms between two progress lines of one download. Default 1000. */
  progressIntervalMs?: number;
  /** Monotonic clock, ms, that `weightsFetchMs` and download rates are measured on. Default `performance.now`. */
  clock?: () => number;
}

/**
 * Local copies of models, content-addressed: `sha256/<digest>/` holds one model (a file or a
 * directory) and `refs/<key>.json` says which digest a URI (with the credentials' scope) was, so a
 * cache hit asks no server anything. A download goes to `partial/`, is hashed as it arrives,
 * checked against any digest the URI (`#sha256=`) or the server published, and becomes an entry by
 * one rename: a truncated, mismatched or killed download is never visible. One download per URI
 * per host at a time (a host-wide lock file; a dead holder's lock is taken over); processes that
 * wait for it then find the entry. Every entry a process handed out is leased until `close()` or
 * the process's death, and never evicted while leased.
 */
export class ModelStore {
  private readonly inflight = new Map<string, Promise<string>>();
  private readonly clock: () => number;
  private readonly leases: Leases;
  private readonly budget: WeightsBudget | undefined;
  private fetching = 0;
  /** The downloads in flight, for `fetchProgress`. */
  private readonly downloads = new Set<DownloadProgress>();
  private downloadBegan: () => void = () => {};
  /**
   * Settles when this store's first download begins (never, for a cache hit or a local file): a
   * worker then loads the rest of itself during the download instead of after the engine's spawn.
   */
  readonly downloading = new Promise<void>((resolve) => (this.downloadBegan = resolve));
  private busySince = 0;
  private fetchedMs: number | undefined;
  /** Models asked for that the cache held, and that it did not (a cold start's `cacheHit`). */
  private hits = 0;
  private misses = 0;

  constructor(private readonly options: ModelStoreOptions) {
    this.clock = options.clock ?? (() => performance.now());
    this.leases = new Leases(join(options.cacheDir, "leases"));
    this.budget = options.budgetBytes === undefined ? undefined : new WeightsBudget(options.cacheDir, options.budgetBytes, this.leases, options.log);
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

  /**
   * Bytes received by the downloads in flight, and their total when every one of them has said its
   * size: the progress a queued job's `waitReason: starting` shows. Undefined when none is in flight.
   */
  get fetchProgress(): { bytes: number; totalBytes?: number } | undefined {
    if (this.downloads.size === 0) return undefined;
    let bytes = 0;
    let total: number | undefined = 0;
    for (const d of this.downloads) {
      bytes += d.bytes;
      total = total === undefined || d.totalBytes === undefined ? undefined : total + d.totalBytes;
    }
    return { bytes, ...(total !== undefined && { totalBytes: total }) };
  }

  /** True when every model asked for came from the cache; undefined until one was asked for (or only local files were). */
  get cacheHit(): boolean | undefined {
    return this.hits + this.misses === 0 ? undefined : this.misses === 0;
  }

  /**
   * The sha256 of the model at `path`, if `path` is one this cache handed out (`sha256/<digest>/…`);
   * undefined for anything else (a local model used in place).
   */
  digestOf(path: string): string | undefined {
    const rel = relative(join(this.options.cacheDir, "sha256"), path);
    const first = rel.split(sep)[0] ?? "";
    return !rel.startsWith("..") && !isAbsolute(rel) && SHA256_HEX.test(first) ? first : undefined;
  }

  /** A local path (file or directory) holding the model named by `uri` (a URL or an absolute path). */
  async materialise(uri: string, signal?: AbortSignal): Promise<string> {
    const url = parseModelUri(uri);
    const source = this.options.sources.find((s) => s.schemes.includes(url.protocol));
    if (source === undefined) {
      const known = this.options.sources.flatMap((s) => s.schemes).join(", ");
      throw new ModelSourceError("MODEL_SCHEME_UNSUPPORTED", `no model source for ${url.protocol} (known: ${known})`);
    }
    const expected = fragmentSha256(url);
    if (expected instanceof Error) throw new ModelSourceError("MODEL_URI_INVALID", expected.message);
    await source.authorize?.(url);
    const key = cacheKey(source.cacheScope === undefined ? url.href : `${source.cacheScope}\n${url.href}`);
    let pending = this.inflight.get(key);
    if (pending === undefined) {
      pending = this.timed(() => this.fetch(url, source, key, expected, signal)).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /** Gives up this process's leases: its models may be evicted once no other process holds them. */
  async close(): Promise<void> {
    await this.leases.releaseAll();
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

  private async fetch(url: URL, source: ModelSource, key: string, expected: string | undefined, signal: AbortSignal | undefined): Promise<string> {
    const { cacheDir } = this.options;
    if (source.copies === false) return pathOf(await source.materialise(url, join(cacheDir, "partial", "unused"), signal));
    const hit = await this.lookup(key, url.href);
    if (hit !== undefined) {
      this.hits++;
      return hit;
    }

    const created = await mkdir(cacheDir, { recursive: true });
    if (created !== undefined) await openDirs(created, cacheDir);
    const release = await acquireHostLock(join(cacheDir, "locks", `${key}.lock`), {
      ...(signal && { signal }),
      onWait: (holder) => this.options.log?.({ msg: "model download waits for another process", uri: redactUri(url), holderPid: holder.pid }),
    }).catch((err: unknown) => {
      if (signal?.aborted) throw new ModelSourceError("MODEL_FETCH_ABORTED", `waiting to fetch ${redactUri(url)} was aborted`, { cause: err });
      throw err;
    });
    try {
      // Whoever held the lock may have just finished this very model.
      const waited = await this.lookup(key, url.href);
      if (waited !== undefined) {
        this.hits++; // another process downloaded it while this one waited for the lock
        return waited;
      }
      this.misses++;
      return await this.download(url, source, key, expected, signal);
    } finally {
      await release();
    }
  }

  /** The path of a completed entry for `key`, leased to this process, or undefined (an entry evicted or damaged is forgotten). */
  private async lookup(key: string, uri: string): Promise<string | undefined> {
    const refPath = join(this.options.cacheDir, "refs", `${key}.json`);
    const ref = refSchema.safeParse(parseJson(await readFile(refPath, "utf8").catch(() => "")));
    if (!ref.success) return undefined;
    if (ref.data.uri !== uri) throw new ModelSourceError("MODEL_CACHE_CONFLICT", `cache entry ${refPath} holds another model (${ref.data.uri})`);
    const entry = join(this.options.cacheDir, "sha256", ref.data.digest);
    // Leased before looking, so an eviction that starts now sees the lease (see Leases).
    await this.leases.take(ref.data.digest);
    const path = join(entry, ref.data.path);
    const [manifest, model] = await Promise.all([stat(join(entry, MANIFEST)).catch(() => undefined), stat(path).catch(() => undefined)]);
    if (manifest !== undefined && model !== undefined) {
      const now = new Date();
      await utimes(join(entry, MANIFEST), now, now).catch(() => undefined); // the LRU clock
      return path;
    }
    await this.leases.release(ref.data.digest);
    await rm(refPath, { force: true });
    // The manifest without the model: files deleted behind our back. Download again rather than serve a hole.
    if (manifest !== undefined) await rm(entry, { recursive: true, force: true });
    return undefined;
  }

  private async download(url: URL, source: ModelSource, key: string, expected: string | undefined, signal: AbortSignal | undefined): Promise<string> {
    const { cacheDir } = this.options;
    const partialDir = join(cacheDir, "partial");
    await mkdir(partialDir, { recursive: true });
    await removeDeadPartials(partialDir, key);
    const partial = join(partialDir, `${key}.partial-${hostname()}-${process.pid}-${randomBytes(4).toString("hex")}`);
    const progress = new DownloadProgress(redactUri(url), this.clock, this.options.progressIntervalMs ?? 1000, this.options.log);
    this.downloads.add(progress);
    this.downloadBegan();
    const hooks: DownloadHooks = {
      expectBytes: async (total) => {
        progress.expect(total);
        await this.budget?.makeRoom(total);
      },
      onBytes: (n) => progress.add(n),
    };
    try {
      signal?.throwIfAborted();
      const result = await source.materialise(url, partial, signal, hooks);
      const produced = pathOf(result);
      const rel = relative(partial, produced);
      if (rel === "" || rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) {
        // Nothing was copied (a local file): the source's path is the model.
        await rm(partial, { recursive: true, force: true });
        return produced;
      }
      const { digest, bytes } = typeof result !== "string" && result.sha256 !== undefined ? { digest: result.sha256, bytes: progress.bytes } : await digestOf(produced);
      if (expected !== undefined && digest !== expected) {
        throw new ModelSourceError("MODEL_CHECKSUM_MISMATCH", `${redactUri(url)} has sha256 ${digest}, not the ${expected} its URI pins`);
      }
      progress.done(digest);
      return await this.commit(partial, rel, { digest, bytes, key, uri: url.href });
    } catch (err) {
      await rm(partial, { recursive: true, force: true });
      if (signal?.aborted) throw new ModelSourceError("MODEL_FETCH_ABORTED", `fetching ${redactUri(url)} was aborted`, { cause: err });
      if (err instanceof ModelSourceError) throw err;
      throw new ModelSourceError("MODEL_FETCH_FAILED", `fetching ${redactUri(url)} failed: ${(err as Error).message}`, { cause: err });
    } finally {
      this.downloads.delete(progress);
    }
  }

  /** Renames a verified download into place as `sha256/<digest>` (or keeps the entry another URI already made of the same bytes) and points the URI's ref at it. */
  private async commit(partial: string, rel: string, m: { digest: string; bytes: number; key: string; uri: string }): Promise<string> {
    const { cacheDir } = this.options;
    await this.budget?.makeRoom(m.bytes);
    await writeFile(join(partial, MANIFEST), JSON.stringify({ digest: m.digest, path: rel, bytes: m.bytes, completedAt: new Date().toISOString() }));
    await makeReadable(partial);
    await mkdir(join(cacheDir, "sha256"), { recursive: true });
    const entry = join(cacheDir, "sha256", m.digest);
    await this.leases.take(m.digest);
    let path = rel;
    try {
      await rename(partial, entry);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
      const theirs = entryManifest.safeParse(parseJson(await readFile(join(entry, MANIFEST), "utf8").catch(() => "")));
      if (!theirs.success) throw err;
      path = theirs.data.path;
      await rm(partial, { recursive: true, force: true });
    }
    await mkdir(join(cacheDir, "refs"), { recursive: true });
    const refPath = join(cacheDir, "refs", `${m.key}.json`);
    const tmp = `${refPath}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(tmp, JSON.stringify({ uri: m.uri, digest: m.digest, path }));
    await rename(tmp, refPath);
    return join(entry, path);
  }
}

function pathOf(result: string | { path: string }): string {
  return typeof result === "string" ? result : result.path;
}

/** sha256 of a file, or of a directory's files (see directoryDigest), and the bytes it holds. */
async function digestOf(path: string): Promise<{ digest: string; bytes: number }> {
  const st = await stat(path);
  if (!st.isDirectory()) return { digest: await fileSha256(path), bytes: st.size };
  const files: { path: string; sha256: string }[] = [];
  let bytes = 0;
  for (const name of (await readdir(path, { recursive: true })).sort()) {
    const full = join(path, name);
    const s = await stat(full);
    if (!s.isFile()) continue;
    files.push({ path: name.split(sep).join("/"), sha256: await fileSha256(full) });
    bytes += s.size;
  }
  return { digest: directoryDigest(files, (t) => createHash("sha256").update(t).digest("hex")), bytes };
}

async function fileSha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest("hex");
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

/**
 * Removes partial downloads of `key` left by dead processes on this host (the caller holds the
 * key's host lock, so no live download of it is running here). Only this host's: a pid means
 * nothing across containers sharing one cache volume.
 */
async function removeDeadPartials(partialDir: string, key: string): Promise<void> {
  const prefix = `${key}.partial-${hostname()}-`;
  for (const name of await readdir(partialDir)) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid !== process.pid && !isProcessAlive(pid)) await rm(join(partialDir, name), { recursive: true, force: true });
  }
}
