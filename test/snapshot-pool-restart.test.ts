import { mkdtemp, readdir, rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Redis } from "ioredis";
import { connectRedis } from "../core/redis/connect.ts";
import { openDb, type DbHandle } from "../core/db/client.ts";
import { endpoints, tenants } from "../core/db/schema.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { workerPayloads } from "./support/event-log-probe.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { spawnScheduler } from "./support/scheduler-process.ts";
import type { EntryProcess } from "./support/entry-process.ts";
import { pidsWithEnv, processState } from "./support/process-probe.ts";
import { TEST_REDIS_URL, clearPrefix, createTestDatabase, uniquePrefix, waitFor } from "./support/services.ts";

/*
 * A paused worker is frozen and cannot see its scheduler die (a running one drains when its IPC
 * channel closes). A scheduler SIGKILLed with paused workers, then restarted on the same data dir:
 * the new one kills what the old one left frozen and closes those sessions; nothing leaks.
 */
describe("snapshot pool: scheduler SIGKILLed with paused workers", () => {
  let database: { url: string; drop: () => Promise<void> };
  let dbh: DbHandle;
  let redis: Redis;
  let dataDir: string;
  const prefix = uniquePrefix();
  const keys = new RedisKeys(prefix);
  const schedulers: EntryProcess[] = [];

  beforeAll(async () => {
    database = await createTestDatabase();
    dbh = openDb(database.url, { max: 2 });
    redis = connectRedis(TEST_REDIS_URL);
    dataDir = await mkdtemp(join(tmpdir(), "hearth-data-"));
    await dbh.db.insert(tenants).values({ id: "t-pool", name: "pool" });
  });
  afterAll(async () => {
    for (const s of schedulers) await s.kill("SIGKILL");
    await clearPrefix(redis, prefix);
    await redis.quit();
    await dbh.close();
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  const start = async () => {
    const s = await spawnScheduler({
      databaseUrl: database.url,
      redisUrl: TEST_REDIS_URL,
      redisPrefix: prefix,
      handlerDirs: [examplesDir],
      env: {
        HEARTH_DATA_DIR: dataDir,
        HEARTH_WORKER_REDIS_ACL: "off",
        // Workers are found here by the endpoint in their /proc environ, which a prestarted worker's does
        // not show (it is its boot's); that spares end with their scheduler is test/scheduler-main.test.ts's.
        HEARTH_PRESTARTED_WORKERS: "0",
      },
    });
    schedulers.push(s);
    return s;
  };
  const workerPids = (ep: string) => pidsWithEnv("HEARTH_ENDPOINT_ID", ep);

  it("the restarted scheduler kills the frozen workers of its predecessor and logs their exit", async () => {
    const ep = `ep-${randomBytes(4).toString("hex")}`;
    // One standby worker, paused at its first idle timeout: the warm pool of a flashboot endpoint.
    await dbh.db.insert(endpoints).values({
      id: ep,
      tenantId: "t-pool",
      name: ep,
      engine: { kind: "handler", module: join(examplesDir, "echo.mjs") },
      gpuTypeIds: [],
      workersMin: 0,
      workersMax: 2,
      workersStandby: 1,
      idleTimeout: 1,
      scalerType: "QUEUE_DELAY",
      scalerValue: 4,
      executionTimeoutMs: 60_000,
      flashboot: true,
    });
    const first = await start();
    // Its worker is started, goes idle, and is paused: every process of it stopped.
    const [old] = await waitFor(() => {
      const pids = workerPids(ep);
      return pids.length === 1 && processState(pids[0]!) === "T" ? pids : undefined;
    }, 30_000);
    expect((await readdir(join(dataDir, "scheduler"))).some((f) => f.startsWith("paused-"))).toBe(true);

    await first.kill("SIGKILL");
    // Nothing thaws it: it stays frozen, an orphan, with its model resident.
    await new Promise((r) => setTimeout(r, 1000));
    expect(processState(old!)).toBe("T");

    const second = await start();
    await waitFor(() => processState(old!) === undefined || processState(old!) === "Z", 20_000);
    // Its session is closed in the log, by the scheduler, with why.
    const exited = await waitFor(async () => {
      return (await workerPayloads(redis, keys.log(ep))).find((p) => p.state === "exited" && p.reason?.includes("scheduler that is gone"));
    });
    expect(exited).toMatchObject({ by: "scheduler" });

    // The new scheduler keeps its own pool (a new worker, paused in turn) and frees it when it stops.
    await waitFor(() => {
      const pids = workerPids(ep).filter((p) => p !== old);
      return pids.length === 1 && processState(pids[0]!) === "T";
    }, 30_000);
    await second.kill("SIGTERM");
    await waitFor(() => workerPids(ep).length === 0, 20_000);
    expect((await readdir(join(dataDir, "scheduler"))).filter((f) => f.startsWith("paused-"))).toEqual([]);
  });
});
