import type { Redis } from "ioredis";

/** What a Redis server says about its own durability. */
export interface RedisPersistence {
  /** Append-only file on (`appendonly yes`). */
  aof: boolean;
  /**
   * RDB snapshots on a schedule (`save` not empty). Always false when `source` is "info": INFO
   * cannot tell whether a schedule exists, so false there means "unknown", not "off".
   */
  rdb: boolean;
  /** `always`, `everysec` or `no`; only known when `source` is "config". */
  appendfsync?: string;
  /** Where the answer came from: CONFIG GET, or INFO persistence when CONFIG is refused. */
  source: "config" | "info";
}

/**
 * Reads the server's persistence settings. Prefers CONFIG GET; managed Redis and ACL-restricted
 * users refuse CONFIG, and then INFO persistence is the best left. Rejects on anything else
 * (connection lost, INFO refused too).
 */
export async function readPersistence(redis: Redis): Promise<RedisPersistence> {
  try {
    // One parameter per call: CONFIG GET with several parameters needs Redis 7.
    const [appendonly, save, appendfsync] = await Promise.all([
      redis.config("GET", "appendonly"),
      redis.config("GET", "save"),
      redis.config("GET", "appendfsync"),
    ]);
    const fsync = configValue(appendfsync, "appendfsync");
    return {
      aof: configValue(appendonly, "appendonly") === "yes",
      rdb: (configValue(save, "save") ?? "").trim() !== "",
      ...(fsync === undefined ? {} : { appendfsync: fsync }),
      source: "config",
    };
  } catch (err) {
    if (!isRefusal(err)) throw err;
  }
  const info = await redis.info("persistence");
  return {
    aof: infoField(info, "aof_enabled") === "1",
    // rdb_last_save_time and rdb_changes_since_last_save describe past saves, not whether a
    // schedule will make the next one (a BGSAVE by hand looks the same), so RDB stays unknown and
    // reads as off: a false alarm on a provider that snapshots beats silence on one that does not.
    rdb: false,
    source: "info",
  };
}

/**
 * One loud line when Redis would lose queued jobs and the event log on restart (or, with
 * `appendfsync no`, on a machine crash); undefined when it persists well enough.
 */
export function persistenceWarning(p: RedisPersistence): string | undefined {
  if (!p.aof && !p.rdb) {
    const unsure =
      p.source === "info"
        ? " (CONFIG was refused, so only AOF could be checked from INFO; ignore this if your provider takes RDB snapshots)"
        : "";
    return (
      "Redis does not persist: accepted jobs and the event log are lost if it restarts; " +
      `run it with --appendonly yes --appendfsync everysec (or a --save schedule) and a --dir on durable storage${unsure}`
    );
  }
  if (p.aof && p.appendfsync === "no") {
    return (
      "Redis appends to its AOF with appendfsync no: the OS flushes when it likes, so a crash of the machine " +
      "can lose recently accepted jobs and events; run it with --appendfsync everysec"
    );
  }
  return undefined;
}

/**
 * Logs `persistenceWarning` for this server, if any. Never rejects: a check that fails is logged
 * as such, since a missing warning must not stop a process that could otherwise serve. It waits
 * as long as the connection's commands do (with `maxRetriesPerRequest: null`, until Redis
 * answers), so don't await it where that would hold up startup.
 */
export async function warnIfRedisDoesNotPersist(redis: Redis, log: (msg: string) => void): Promise<void> {
  try {
    const warning = persistenceWarning(await readPersistence(redis));
    if (warning !== undefined) log(warning);
  } catch (err) {
    log(`could not check whether Redis persists: ${err instanceof Error ? err.message : String(err)}`);
  }
}

// NOPERM: an ACL user without +config. Unknown command: CONFIG renamed or removed, as managed
// services do. Anything else (a dropped connection) is not a refusal and INFO would fail the same way.
function isRefusal(err: unknown): boolean {
  return err instanceof Error && /^NOPERM\b|unknown command/i.test(err.message);
}

// CONFIG GET replies with a flat [name, value, ...] list; match the name case-insensitively.
function configValue(reply: unknown, name: string): string | undefined {
  if (!Array.isArray(reply)) return undefined;
  for (let i = 0; i + 1 < reply.length; i += 2) {
    const key: unknown = reply[i];
    const value: unknown = reply[i + 1];
    if (typeof key === "string" && key.toLowerCase() === name && typeof value === "string") return value;
  }
  return undefined;
}

function infoField(info: string, name: string): string | undefined {
  for (const line of info.split(/\r?\n/)) {
    if (line.startsWith(`${name}:`)) return line.slice(name.length + 1).trim();
  }
  return undefined;
}
