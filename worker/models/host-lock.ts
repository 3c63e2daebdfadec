import { randomBytes } from "node:crypto";
import { link, mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { z } from "zod";
import { isProcessAlive } from "../../core/fs/real-paths.ts";

/** Who holds a lock or a lease: written into the file, read back by whoever finds it. */
const holderSchema = z.object({ host: z.string(), pid: z.number().int(), nonce: z.string() });
type Holder = z.infer<typeof holderSchema>;

function me(): Holder {
  return { host: hostname(), pid: process.pid, nonce: randomBytes(8).toString("hex") };
}

/**
 * Alive unless it is a process of this host that has exited. A holder on another host sharing the
 * volume cannot be judged from here and counts as alive (the cache is meant to be one per host).
 * A recycled pid also reads as alive: that errs towards waiting, never towards two writers.
 */
function alive(h: Holder): boolean {
  return h.host !== hostname() || h.pid === process.pid || isProcessAlive(h.pid);
}

async function readHolder(path: string): Promise<Holder | undefined | "gone"> {
  try {
    const parsed = holderSchema.safeParse(JSON.parse(await readFile(path, "utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "gone";
    return undefined;
  }
}

/** Writes `holder` to `path` only if nothing is there: the content is complete before the name exists (link is atomic). */
async function createExclusive(path: string, holder: Holder): Promise<boolean> {
  const tmp = `${path}.${holder.nonce}.tmp`;
  await writeFile(tmp, JSON.stringify(holder));
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}

export interface HostLockOptions {
  /** How often a waiter looks again, ms. Default 50. */
  pollMs?: number;
  signal?: AbortSignal;
  /** Called once when the lock is found held by a live process (the caller logs that it waits). */
  onWait?: (holder: { pid: number; host: string }) => void;
}

/**
 * A lock shared by every process of this host: a file `path` naming its holder (host, pid). It
 * survives its holder's death as a file but not as a lock: a waiter that finds the holder's pid
 * gone takes it over, so a SIGKILLed downloader never blocks the next one. Returns the release.
 *
 * Taking over a dead holder's lock renames the file aside and checks that what it moved is the dead
 * holder's (two waiters may race there); if it moved a live holder's fresh lock instead, it puts it back.
 */
export async function acquireHostLock(path: string, options: HostLockOptions = {}): Promise<() => Promise<void>> {
  const self = me();
  const pollMs = options.pollMs ?? 50;
  let told = false;
  await mkdir(dirname(path), { recursive: true });
  for (;;) {
    options.signal?.throwIfAborted();
    if (await createExclusive(path, self)) return () => releaseIfMine(path, self);
    const holder = await readHolder(path);
    if (holder === "gone") continue;
    if (holder !== undefined && !alive(holder)) {
      await takeOver(path, holder);
      continue;
    }
    if (!told && holder !== undefined) {
      told = true;
      options.onWait?.({ pid: holder.pid, host: holder.host });
    }
    await sleep(pollMs, options.signal);
  }
}

async function takeOver(path: string, dead: Holder): Promise<void> {
  const aside = `${path}.stale-${randomBytes(6).toString("hex")}`;
  try {
    await rename(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // another waiter took it over first
    throw err;
  }
  const moved = await readHolder(aside);
  if (moved !== "gone" && moved !== undefined && moved.nonce !== dead.nonce && alive(moved)) {
    // Raced: that was a live holder's new lock. Put it back (unless someone else already holds the name).
    await link(aside, path).catch(() => undefined);
  }
  await rm(aside, { force: true });
}

async function releaseIfMine(path: string, self: Holder): Promise<void> {
  const holder = await readHolder(path);
  if (holder !== "gone" && holder?.nonce === self.nonce) await rm(path, { force: true });
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Leases on cache entries: one file per holding process in `<dir>/<entry>/`, named after it. An
 * entry with a live lease is never evicted; a lease whose process died is stale and removed by
 * whoever looks. `take` is called before the caller checks the entry still exists, and eviction
 * checks leases again after moving an entry aside, so the two cannot both succeed.
 */
export class Leases {
  private readonly self = me();
  private readonly held = new Set<string>();

  constructor(private readonly dir: string) {}

  private file(entry: string): string {
    return join(this.dir, entry, `${this.self.host}-${this.self.pid}-${this.self.nonce}`);
  }

  async take(entry: string): Promise<void> {
    if (this.held.has(entry)) return;
    await mkdir(join(this.dir, entry), { recursive: true });
    // Complete or absent: a lease cut short by a kill would read as unparseable, and stay live for ever.
    const file = this.file(entry);
    await writeFile(`${file}.tmp`, JSON.stringify(this.self));
    await rename(`${file}.tmp`, file);
    this.held.add(entry);
  }

  async release(entry: string): Promise<void> {
    this.held.delete(entry);
    await rm(this.file(entry), { force: true });
  }

  async releaseAll(): Promise<void> {
    await Promise.all([...this.held].map((e) => this.release(e)));
  }

  /** Whether any live process (this one included) holds `entry`; stale leases found on the way are removed. */
  async leased(entry: string): Promise<boolean> {
    let names: string[];
    try {
      names = await readdir(join(this.dir, entry));
    } catch {
      return false;
    }
    let live = false;
    for (const name of names) {
      if (name.endsWith(".tmp")) continue;
      const holder = await readHolder(join(this.dir, entry, name));
      if (holder === "gone") continue;
      if (holder === undefined || alive(holder)) live = true;
      else await rm(join(this.dir, entry, name), { force: true });
    }
    return live;
  }
}
