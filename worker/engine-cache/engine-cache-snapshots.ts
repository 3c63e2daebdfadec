import { createHash, randomBytes } from "node:crypto";
import { readdir, realpath, rm, stat } from "node:fs/promises";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { z } from "zod";
import { archiveGrant, restoreGrant, type EngineCacheRequest } from "../../core/contracts/engine-cache.ts";
import { engineCacheDirs } from "../../core/engine/engine-profiles.ts";
import { isProcessAlive } from "../../core/fs/real-paths.ts";
import { errorFields, type Log } from "../../core/log/process-log.ts";
import { resolveCacheDirs, type ResolvedCacheDir } from "../../core/weights/engine-cache-paths.ts";
import type { SnapshotManifest, SnapshotParts } from "../../core/weights/engine-cache-key.ts";
import type { EngineCacheContext, EngineCacheHooks } from "../engines/openai/engine-cache-hooks.ts";
import { SnapshotRefused } from "./snapshot-reader.ts";
import { createArchive, extractArchive } from "./snapshot-tar-process.ts";
import { downloadSnapshot, putJson, SnapshotDamaged, uploadSnapshot } from "./snapshot-transfer.ts";

type SnapshotAsk = EngineCacheRequest extends infer R ? (R extends unknown ? Omit<R, "id" | "endpointId"> : never) : never;

/** The broker's side, as worker/runtime/offload-client.ts speaks it. */
export interface SnapshotBroker {
  ask<S extends z.ZodType>(request: SnapshotAsk, grant: S): Promise<z.infer<S>>;
}

export interface EngineCacheSnapshotsOptions {
  /** Presigned URLs from the control plane (the worker holds no S3 credential). */
  broker: SnapshotBroker;
  /** HEARTH_IMAGE and HEARTH_GPU_TYPE. */
  image: string;
  gpuType: string;
  /** HEARTH_ENGINE_CACHE_MAX_BYTES: most bytes the cache directories may hold to be archived or restored. */
  maxBytes: number;
  /** The sha256 of a model by the path the weights cache handed out; undefined for a local model (then its path, size and mtime name it). */
  modelDigest?: (modelPath: string) => string | undefined;
  /** The built snapshot-tar-main.js, run as the engine's user. */
  tarEntry: string;
  log: Log;
  /** Where archives wait while they are checked or uploaded (files 0600). Default the OS temp directory. */
  workDir?: string;
  clock?: () => number;
}

const TEMP_PREFIX = "hearth-engine-cache-";

/**
 * Engine cache snapshots for one worker (issue 10): before its engine starts, the declared cache
 * directories (core/engine/engine-profiles.ts) are filled from the tenant's snapshot for this image,
 * GPU type, profile and model, if there is one; after the engine's first healthy start, if there was
 * none, they are archived and uploaded in the background. Every byte is verified before anything is
 * extracted (sha256 from the manifest); extraction refuses the archive at its first entry that is not
 * a plain file or directory inside a declared directory, removing what it wrote before it; both
 * archiving and extraction run as the engine's user (snapshot-tar-main.ts). Failures are logged and
 * cost the cache, never the worker.
 */
export class EngineCacheSnapshots implements EngineCacheHooks {
  private plan: { dirs: ResolvedCacheDir[]; parts: SnapshotParts; archive: boolean; replaces?: string } | undefined;
  private restoreMs: number | undefined;
  private hit: boolean | undefined;
  private archiving: Promise<void> | undefined;
  private readonly stopping = new AbortController();
  private readonly clock: () => number;

  constructor(private readonly options: EngineCacheSnapshotsOptions) {
    this.clock = options.clock ?? (() => performance.now());
  }

  /** For the cold start's report: the restore's length (ms) and whether it restored anything. Empty when the engine declares no cache directory. */
  report(): { engineCacheRestoreMs?: number; engineCacheHit?: boolean } {
    return { ...(this.restoreMs !== undefined && { engineCacheRestoreMs: Math.round(this.restoreMs) }), ...(this.hit !== undefined && { engineCacheHit: this.hit }) };
  }

  async restore(context: EngineCacheContext): Promise<void> {
    const started = this.clock();
    const { log } = this.options;
    try {
      const { dirs, skipped } = resolveCacheDirs(engineCacheDirs(context.profile), context.env, context.user?.name ?? userInfo().username);
      for (const s of skipped) log({ level: "debug", msg: "engine cache directory left out", dir: s.id, reason: s.reason });
      if (dirs.length === 0) return;
      const parts: SnapshotParts = { image: this.options.image, gpuType: this.options.gpuType, profile: context.profile, model: await this.modelId(context.modelPath) };
      // Until the broker has answered, nothing is archived: a broker or S3 that is away now would refuse the upload too.
      this.plan = { dirs, parts, archive: false };
      await this.removeDeadTemps();
      const grant = await this.options.broker.ask({ kind: "engine-cache-restore", snapshot: parts }, restoreGrant);
      const snapshot = grant.snapshot;
      if (snapshot === null) {
        this.plan.archive = true;
        this.hit = false;
        log({ msg: "engine cache miss", dirs: dirs.map((d) => d.id) });
        return;
      }
      await this.restoreSnapshot(snapshot, dirs, context, started);
    } catch (err) {
      log({ level: "warn", msg: "engine cache restore failed", ...errorFields(err) });
    } finally {
      if (this.plan !== undefined) this.restoreMs = this.clock() - started;
    }
  }

  private async restoreSnapshot(snapshot: { sha256: string; bytes: number; url: string }, dirs: ResolvedCacheDir[], context: EngineCacheContext, started: number): Promise<void> {
    const plan = this.plan!;
    const { log, maxBytes } = this.options;
    if (snapshot.bytes > maxBytes) {
      this.hit = false;
      log({ level: "warn", msg: "engine cache snapshot not restored: larger than HEARTH_ENGINE_CACHE_MAX_BYTES", bytes: snapshot.bytes, maxBytes });
      return;
    }
    const file = this.tempFile("restore");
    const signal = this.stopping.signal;
    try {
      await downloadSnapshot(snapshot.url, file, snapshot, signal);
      // One pass: the snapshot process checks each entry before it writes it, and on a refusal
      // removes what it wrote (a listing first would gunzip gigabytes twice on the cold start's path).
      const report = await extractArchive({ mode: "extract", dirs, maxBytes }, file, { entry: this.options.tarEntry, ...(context.user && { user: context.user }), signal });
      if (!report.ok) throw new SnapshotRefused(report.message);
      if (report.mode !== "extract") throw new Error("the snapshot process answered for another mode");
      this.hit = report.restored.length > 0;
      log({ msg: "engine cache restored", sha256: snapshot.sha256, bytes: snapshot.bytes, files: report.files, restored: report.restored, kept: report.kept, ms: Math.round(this.clock() - started) });
    } catch (err) {
      this.hit = false;
      if (err instanceof SnapshotDamaged || err instanceof SnapshotRefused) {
        // Not ours, or not what was stored: the next archive replaces exactly this snapshot.
        plan.archive = true;
        plan.replaces = snapshot.sha256;
        log({ level: "warn", msg: "engine cache snapshot refused", sha256: snapshot.sha256, ...errorFields(err) });
        return;
      }
      throw err;
    } finally {
      await rm(file, { force: true });
    }
  }

  archive(context: EngineCacheContext): void {
    const plan = this.plan;
    if (plan === undefined || !plan.archive || this.archiving !== undefined) return;
    this.archiving = this.archiveNow(plan, context).catch((err: unknown) => {
      this.options.log({ level: "warn", msg: "engine cache archive failed", ...errorFields(err) });
    });
  }

  private async archiveNow(plan: NonNullable<typeof this.plan>, context: EngineCacheContext): Promise<void> {
    const { log, maxBytes } = this.options;
    const started = this.clock();
    const file = this.tempFile("archive");
    const signal = this.stopping.signal;
    try {
      const built = await createArchive({ mode: "create", dirs: plan.dirs, maxBytes }, file, { entry: this.options.tarEntry, ...(context.user && { user: context.user }), signal });
      const report = built.report;
      if (!report.ok) return void log({ level: "warn", msg: "engine cache not archived: the cache directories hold more than HEARTH_ENGINE_CACHE_MAX_BYTES", maxBytes, detail: report.message });
      if (report.mode !== "create") throw new Error("the snapshot process answered for another mode");
      if (report.files === 0) return void log({ msg: "engine cache not archived: the cache directories hold no files", dirs: plan.dirs.map((d) => d.id) });
      const grant = await this.options.broker.ask(
        { kind: "engine-cache-archive", snapshot: plan.parts, sha256: built.sha256, bytes: built.bytes, ...(plan.replaces !== undefined && { replaces: plan.replaces }) },
        archiveGrant,
      );
      if (grant.exists) return void log({ msg: "engine cache not archived: another worker's snapshot is there" });
      await uploadSnapshot(grant.archiveUrl, file, built.bytes, signal);
      // The manifest last: until it is written, no worker restores the archive.
      const manifest: SnapshotManifest = { format: "hearth-engine-cache/1", sha256: built.sha256, bytes: built.bytes, createdAt: new Date().toISOString(), dirs: report.dirs };
      await putJson(grant.manifestUrl, manifest, signal);
      log({ msg: "engine cache archived", sha256: built.sha256, bytes: built.bytes, files: report.files, fileBytes: report.bytes, skipped: report.skipped, dirs: report.dirs, ms: Math.round(this.clock() - started) });
    } finally {
      await rm(file, { force: true });
    }
  }

  async stop(): Promise<void> {
    this.stopping.abort(new Error("the worker is stopping"));
    await this.archiving;
  }

  /** `sha256:<digest>` of a cached model, or `file:<hash of real path, size and mtime>` of a local one (used in place, never read whole here). */
  private async modelId(modelPath: string): Promise<string> {
    const digest = this.options.modelDigest?.(modelPath);
    if (digest !== undefined) return `sha256:${digest}`;
    const real = await realpath(modelPath);
    const st = await stat(real);
    return `file:${createHash("sha256").update(JSON.stringify([real, st.size, st.mtimeMs])).digest("hex")}`;
  }

  private tempFile(kind: string): string {
    return join(this.options.workDir ?? tmpdir(), `${TEMP_PREFIX}${process.pid}-${kind}-${randomBytes(6).toString("hex")}.tar.gz`);
  }

  /** Archives left by workers that were killed mid-transfer. */
  private async removeDeadTemps(): Promise<void> {
    const dir = this.options.workDir ?? tmpdir();
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const pid = Number(name.startsWith(TEMP_PREFIX) ? name.slice(TEMP_PREFIX.length).split("-")[0] : NaN);
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !isProcessAlive(pid)) await rm(join(dir, name), { force: true });
    }
  }
}
