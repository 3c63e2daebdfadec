import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort, TEST_REDIS_URL } from "../../test/support/services.ts";
import { connectRedis } from "./connect.ts";
import { persistenceWarning, readPersistence, warnIfRedisDoesNotPersist } from "./persistence.ts";

describe("persistenceWarning", () => {
  it("warns when neither AOF nor RDB is on", () => {
    const w = persistenceWarning({ aof: false, rdb: false, appendfsync: "everysec", source: "config" });
    expect(w).toMatch(/^Redis does not persist: accepted jobs and the event log are lost if it restarts; run it with --appendonly yes/);
    expect(w).not.toContain("\n");
    expect(w).not.toContain("CONFIG was refused");
  });

  it("says RDB could not be checked when the answer came from INFO", () => {
    expect(persistenceWarning({ aof: false, rdb: false, source: "info" })).toMatch(/^Redis does not persist: .*CONFIG was refused/);
  });

  it("is quiet when AOF or an RDB schedule is on", () => {
    expect(persistenceWarning({ aof: true, rdb: false, appendfsync: "everysec", source: "config" })).toBeUndefined();
    expect(persistenceWarning({ aof: true, rdb: false, appendfsync: "always", source: "config" })).toBeUndefined();
    expect(persistenceWarning({ aof: false, rdb: true, appendfsync: "no", source: "config" })).toBeUndefined();
    expect(persistenceWarning({ aof: true, rdb: false, source: "info" })).toBeUndefined();
  });

  it("warns differently when AOF never fsyncs", () => {
    const w = persistenceWarning({ aof: true, rdb: true, appendfsync: "no", source: "config" });
    expect(w).toMatch(/^Redis appends to its AOF with appendfsync no: .* run it with --appendfsync everysec$/);
    expect(w).not.toMatch(/does not persist/);
  });
});

describe("readPersistence on the shared test Redis", () => {
  const redis = connectRedis(TEST_REDIS_URL);
  afterAll(() => redis.disconnect());

  it("agrees with CONFIG GET (read only: the shared server's config is not ours to change)", async () => {
    const p = await readPersistence(redis);
    const [, appendonly] = (await redis.config("GET", "appendonly")) as string[];
    const [, save] = (await redis.config("GET", "save")) as string[];
    const [, appendfsync] = (await redis.config("GET", "appendfsync")) as string[];
    expect(p).toEqual({ aof: appendonly === "yes", rdb: (save ?? "").trim() !== "", appendfsync, source: "config" });
  });
});

interface Throwaway {
  url: string;
  stop: () => Promise<void>;
}

// A redis-server of this test's own on a free port, so its config can be whatever the case needs.
async function startThrowawayRedis(args: string[]): Promise<Throwaway> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "hearth-redis-"));
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d: Buffer) => (output += d.toString()));
  child.stderr.on("data", (d: Buffer) => (output += d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  const url = `redis://127.0.0.1:${port}`;
  const probe = connectRedis(url);
  // Refused connects before the server listens are expected; ioredis retries them.
  probe.on("error", () => {});
  try {
    // A bad flag makes redis-server exit at once; say why instead of waiting out the test timeout.
    await Promise.race([
      probe.ping(),
      exited.then(() => Promise.reject(new Error(`redis-server exited on start: ${output}`))),
    ]);
  } catch (err) {
    await stop();
    throw err;
  } finally {
    probe.disconnect();
  }
  return { url, stop };
}

describe("readPersistence on a throwaway redis-server with AOF", () => {
  let server: Throwaway;
  let redis: Redis;
  let limited: Redis;

  beforeAll(async () => {
    server = await startThrowawayRedis(["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]);
    redis = connectRedis(server.url);
    // What a managed Redis hands out: everything but CONFIG.
    await redis.acl("SETUSER", "no-config", "on", "nopass", "~*", "&*", "+@all", "-config");
    limited = connectRedis(server.url, { username: "no-config", password: "unused" });
  });

  afterAll(async () => {
    redis?.disconnect();
    limited?.disconnect();
    await server?.stop();
  });

  it("detects AOF from CONFIG", async () => {
    const p = await readPersistence(redis);
    expect(p).toEqual({ aof: true, rdb: false, appendfsync: "everysec", source: "config" });
    expect(persistenceWarning(p)).toBeUndefined();
  });

  it("falls back to INFO when CONFIG is refused with NOPERM", async () => {
    await expect(limited.config("GET", "appendonly")).rejects.toThrow(/^NOPERM/);
    expect(await readPersistence(limited)).toEqual({ aof: true, rdb: false, source: "info" });
  });
});

describe("readPersistence where CONFIG does not exist", () => {
  let server: Throwaway;
  let redis: Redis;

  beforeAll(async () => {
    server = await startThrowawayRedis(["--appendonly", "no", "--save", "", "--rename-command", "CONFIG", ""]);
    redis = connectRedis(server.url);
  });

  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it("falls back to INFO on an unknown command, and the warning says RDB went unchecked", async () => {
    const p = await readPersistence(redis);
    expect(p).toEqual({ aof: false, rdb: false, source: "info" });
    const logged: string[] = [];
    await warnIfRedisDoesNotPersist(redis, (m) => logged.push(m));
    expect(logged).toEqual([persistenceWarning(p)]);
    expect(logged[0]).toContain("CONFIG was refused");
  });
});

describe("warnIfRedisDoesNotPersist", () => {
  it("logs that it could not check instead of rejecting", async () => {
    // Nothing listens and commands are not queued, so the check fails at once.
    const redis = new Redis({ port: await freePort(), lazyConnect: true, enableOfflineQueue: false });
    const logged: string[] = [];
    try {
      await expect(warnIfRedisDoesNotPersist(redis, (m) => logged.push(m))).resolves.toBeUndefined();
    } finally {
      redis.disconnect();
    }
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatch(/^could not check whether Redis persists: /);
  });
});
