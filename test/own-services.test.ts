import { afterAll, beforeAll, describe, expect, it } from "vitest";
import postgres from "postgres";
import { Redis } from "ioredis";
import { startOwnPostgres, type OwnPostgres } from "./support/own-postgres.ts";
import { startOwnRedis, type OwnRedis } from "./support/own-redis.ts";

// The helpers fault tests use to take their own Postgres and Redis down and bring them back.
describe("a test-owned Postgres", () => {
  let pg: OwnPostgres;
  beforeAll(async () => {
    pg = await startOwnPostgres();
  });
  afterAll(async () => {
    await pg?.destroy();
  });

  it("keeps committed rows across stop and start, and refuses connections while stopped", async () => {
    expect(pg.port).not.toBe(5432);
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    try {
      await sql`create table probe (id int primary key, note text not null)`;
      await sql`insert into probe values (1, 'before stop')`;
    } finally {
      await sql.end({ timeout: 5 });
    }

    await pg.stop();
    const down = postgres(pg.url, { max: 1, connect_timeout: 2, onnotice: () => {} });
    try {
      await expect(down`select 1`).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await down.end({ timeout: 1 });
    }

    await pg.start();
    const again = postgres(pg.url, { max: 1, onnotice: () => {} });
    try {
      expect(await again`select id, note from probe`).toEqual([{ id: 1, note: "before stop" }]);
    } finally {
      await again.end({ timeout: 5 });
    }
  });

  it("destroy is safe when the server is already stopped", async () => {
    const other = await startOwnPostgres();
    await other.stop();
    await other.destroy();
    await other.destroy();
  });
});

describe("a test-owned Redis with appendfsync always", () => {
  let redis: OwnRedis;
  beforeAll(async () => {
    redis = await startOwnRedis({ aof: true, appendfsync: "always" });
  });
  afterAll(async () => {
    await redis?.destroy();
  });

  it("keeps acknowledged writes across kill -9 and restart", async () => {
    expect(redis.port).not.toBe(6379);
    const before = new Redis(redis.url, { maxRetriesPerRequest: 0, retryStrategy: () => null });
    before.on("error", () => {}); // the kill below drops this connection
    await before.set("a", "1");
    await before.rpush("list", "x", "y");
    await before.hset("hash", { field: "v" });

    await redis.kill();
    before.disconnect();

    await redis.start();
    const after = new Redis(redis.url, { maxRetriesPerRequest: 0 });
    try {
      expect(await after.get("a")).toBe("1");
      expect(await after.lrange("list", 0, -1)).toEqual(["x", "y"]);
      expect(await after.hgetall("hash")).toEqual({ field: "v" });
    } finally {
      after.disconnect();
    }
  });
});
