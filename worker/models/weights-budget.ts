import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Log } from "../../core/log/process-log.ts";
import { planEviction, type CachedModel } from "../../core/weights/cache-eviction.ts";
import { acquireHostLock, type Leases } from "./host-lock.ts";
import { ModelSourceError } from "./model-source.ts";
import { entryManifest, MANIFEST, parseJson } from "./cache-layout.ts";

/**
 * HEARTH_MODEL_CACHE_BYTES: keeps the completed entries of a cache directory within a budget by
 * evicting the least recently used ones that no live process leases (core/weights/cache-eviction.ts
 * decides). One evictor at a time per host (a host lock); an entry is moved aside before it is
 * deleted and its leases are checked again after the move, so a worker that leased it meanwhile
 * gets it back. Downloads in progress are not counted: two at once may overshoot the budget by one model.
 */
export class WeightsBudget {
  constructor(
    private readonly cacheDir: string,
    private readonly budgetBytes: number,
    private readonly leases: Leases,
    private readonly log: Log | undefined,
  ) {}

  /** Evicts until `incomingBytes` more fit; rejects with MODEL_CACHE_TOO_SMALL when they cannot. */
  async makeRoom(incomingBytes: number): Promise<void> {
    const release = await acquireHostLock(join(this.cacheDir, "locks", "evict.lock"));
    try {
      // Whatever is in trash/ while we hold the lock is garbage: an evictor killed between its move and its delete.
      await rm(join(this.cacheDir, "trash"), { recursive: true, force: true });
      const entries = await this.entries();
      const plan = planEviction(entries, incomingBytes, this.budgetBytes);
      if (!plan.ok) throw new ModelSourceError("MODEL_CACHE_TOO_SMALL", plan.message);
      for (const digest of plan.evict) await this.evict(digest);
    } finally {
      await release();
    }
  }

  private async entries(): Promise<CachedModel[]> {
    const dir = join(this.cacheDir, "sha256");
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: CachedModel[] = [];
    for (const digest of names) {
      const manifestPath = join(dir, digest, MANIFEST);
      const [raw, st] = await Promise.all([readFile(manifestPath, "utf8").catch(() => ""), stat(manifestPath).catch(() => undefined)]);
      const m = entryManifest.safeParse(parseJson(raw));
      if (!m.success || st === undefined) continue;
      out.push({ digest, bytes: m.data.bytes, lastUsedMs: st.mtimeMs, leased: await this.leases.leased(digest) });
    }
    return out;
  }

  private async evict(digest: string): Promise<void> {
    const entry = join(this.cacheDir, "sha256", digest);
    await mkdir(join(this.cacheDir, "trash"), { recursive: true });
    const aside = join(this.cacheDir, "trash", `${digest}-${randomBytes(4).toString("hex")}`);
    await rename(entry, aside);
    if (await this.leases.leased(digest)) {
      await rename(aside, entry).catch(() => rm(aside, { recursive: true, force: true }));
      return;
    }
    await rm(aside, { recursive: true, force: true });
    this.log?.({ msg: "model evicted from the cache", sha256: digest });
  }
}
