import { Queue, Worker } from "bullmq";
import { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { LogLine } from "../core/log/process-log.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { workerUserName } from "../core/redis/worker-acl.ts";
import { startOwnRedis, type OwnRedis } from "../test/support/own-redis.ts";
import { waitFor } from "../test/support/services.ts";
import { WorkerRedisUsers } from "./worker-redis-users.ts";

/**
 * On a test-owned Redis: the negative cases send FLUSHALL and friends, which must never reach the
 * shared server even if the rules were wrong.
 */
let server: OwnRedis;
let admin: Redis;
const open: Array<{ disconnect(): void } | { close(): Promise<void> }> = [];
// Each test its own installation (prefix): a sweep treats another test's users as a dead scheduler's.
let installations = 0;
let prefix = "";
let keys = new RedisKeys("{unset}");
beforeEach(() => {
  prefix = `{hearth-acl-${++installations}}`;
  keys = new RedisKeys(prefix);
});

beforeAll(async () => {
  server = await startOwnRedis({ aof: true, appendfsync: "everysec" });
  admin = new Redis(server.url, { maxRetriesPerRequest: null });
  admin.on("error", () => {}); // the restart test stops the server under it
});
afterAll(async () => {
  for (const c of open.splice(0)) await ("close" in c ? c.close() : c.disconnect());
  admin.disconnect();
  await server.destroy();
});

function users(over: Partial<ConstructorParameters<typeof WorkerRedisUsers>[0]> = {}) {
  const logged: LogLine[] = [];
  const u = new WorkerRedisUsers({ redis: admin, redisUrl: server.url, keys, enabled: true, log: (l) => logged.push(l), ...over });
  open.push({ disconnect: () => u.close() });
  return { u, logged };
}

function client(url: string): Redis {
  const c = new Redis(url, { maxRetriesPerRequest: null, lazyConnect: true });
  c.on("error", () => {});
  open.push(c);
  return c;
}

// Scripts are refused with ERR and this wording rather than NOPERM.
const noperm = (p: Promise<unknown>) => expect(p).rejects.toThrow(/^NOPERM|user executing the script can't/);

describe("a worker's Redis user", () => {
  it("runs BullMQ jobs, its heartbeat's TIME and its own pub/sub on its endpoint, and nothing of another endpoint or of the server", async () => {
    const { u } = users();
    const url = await u.create("ep-a", "w-1");
    expect(new URL(url).username).not.toBe("");
    const w = client(url);
    await w.connect();

    // A real BullMQ Worker on its own queue, a job added by the platform's connection.
    const queue = new Queue(keys.queueName("ep-a"), { connection: admin, prefix });
    open.push(queue);
    const worker = new Worker(keys.queueName("ep-a"), async (job) => ({ doubled: (job.data as { n: number }).n * 2 }), { connection: client(url), prefix, name: "w-1", stalledInterval: 1000, lockDuration: 2000 });
    open.push(worker);
    const errors: string[] = [];
    worker.on("error", (e) => errors.push(e.message));
    const job = await queue.add("j", { n: 21 });
    await waitFor(async () => (await job.getState()) === "completed");
    expect((await queue.getJob(job.id!))?.returnvalue).toEqual({ doubled: 42 });
    expect(errors).toEqual([]);
    await worker.close();

    // Its own keys, scripts that use TIME, its own channels.
    await w.hset(keys.workers("ep-a"), "w-1", "{}");
    expect(await w.eval("redis.call('TIME') return redis.call('HGET', KEYS[1], 'w-1')", 1, keys.workers("ep-a"))).toBe("{}");
    const sub = client(url);
    await sub.connect();
    await sub.subscribe(keys.controlChannel("ep-a"));
    expect(await w.publish(keys.jobEventsChannel("ep-a"), "x")).toBe(0);

    // Another endpoint's keys, directly or through a script, declared or not.
    await admin.set(`${keys.queuePrefix("ep-b")}:secret`, "theirs");
    await noperm(w.get(`${keys.queuePrefix("ep-b")}:secret`));
    await noperm(w.hset(keys.workers("ep-b"), "w-1", "{}"));
    await noperm(w.eval("return redis.call('GET', KEYS[1])", 1, `${keys.queuePrefix("ep-b")}:secret`));
    await noperm(w.eval(`return redis.call('GET', '${keys.queuePrefix("ep-b")}:secret')`, 1, keys.workers("ep-a")));
    await noperm(w.get(`${prefix}:scheduler:leader`));
    // Another endpoint's channels, and the platform's.
    await noperm(sub.subscribe(keys.controlChannel("ep-b")));
    await noperm(w.publish(keys.jobEventsChannel("ep-b"), "x"));
    await noperm(w.publish(keys.wakeChannel(), "x"));
    await noperm(w.eval(`return redis.call('PUBLISH', '${keys.jobEventsChannel("ep-b")}', 'x')`, 0));
    // What names no key yet reaches every tenant's data or the server.
    await noperm(w.scan("0"));
    await noperm(w.keys("*"));
    await noperm(w.randomkey());
    await noperm(w.call("PUBSUB", "CHANNELS"));
    await noperm(w.flushall());
    await noperm(w.flushdb());
    await noperm(w.config("GET", "*"));
    await noperm(w.call("CLIENT", "LIST"));
    await noperm(w.call("ACL", "LIST"));
    await noperm(w.call("FUNCTION", "FLUSH"));
    await noperm(w.call("SCRIPT", "FLUSH"));
    await noperm(w.call("SORT", keys.workers("ep-a"), "BY", "nosort", "GET", `${keys.queuePrefix("ep-b")}:*`));
    expect(await admin.get(`${keys.queuePrefix("ep-b")}:secret`)).toBe("theirs");
    await queue.close();
  });

  it("is deleted with its session: the password stops working and open connections are closed", async () => {
    const { u } = users();
    const url = await u.create("ep-a", "w-2");
    const w = client(url);
    await w.connect();
    expect(await w.ping()).toBe("PONG");
    const closed = new Promise<void>((resolve) => w.once("close", () => resolve()));
    await u.remove("ep-a", "w-2");
    await closed;
    const again = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    again.on("error", () => {});
    await expect(again.connect().then(() => again.ping())).rejects.toThrow(/WRONGPASS|NOAUTH|closed/i);
    again.disconnect();
    await u.remove("ep-a", "w-2"); // idempotent
  });

  it("sweep: removes this installation's users whose worker is gone, keeps live ones and other installations', restores its own lost ones", async () => {
    const { u } = users();
    const dead = workerUserName(prefix, "ep-a", "w-dead");
    const foreignLive = workerUserName(prefix, "ep-a", "w-beating");
    const otherInstall = workerUserName("{someone-else}", "ep-a", "w-dead");
    for (const name of [dead, foreignLive, otherInstall]) await admin.call("ACL", "SETUSER", name, "on", `>${"x".repeat(40)}`);
    const mine = await u.create("ep-a", "w-mine");
    const mineName = decodeURIComponent(new URL(mine).username);
    await admin.call("ACL", "DELUSER", mineName); // lost behind our back (ACL LOAD, a restart)

    const asked: string[] = [];
    const result = await u.sweep(async (_ep, workerId) => {
      asked.push(workerId);
      return workerId === "w-beating";
    });
    expect(result.removed).toEqual([dead]);
    expect(result.restored).toEqual([mineName]);
    expect(asked.sort()).toEqual(["w-beating", "w-dead"]); // never asks about its own or another installation's
    const present = (await admin.call("ACL", "USERS")) as string[];
    expect(present).toEqual(expect.arrayContaining([foreignLive, otherInstall, mineName]));
    expect(present).not.toContain(dead);
    const w = client(mine);
    await w.connect();
    expect(await w.ping()).toBe("PONG");
    for (const name of [foreignLive, otherInstall]) await admin.call("ACL", "DELUSER", name);
  });

  it("survives a Redis restart: the scheduler sets its users again on reconnect, and the worker's connection comes back", async () => {
    const { u } = users();
    const url = await u.create("ep-a", "w-restart");
    const w = client(url);
    await w.connect();
    await w.set(`${keys.queuePrefix("ep-a")}:before`, "1");
    await server.stop();
    await server.start();
    // ACL SETUSER is not in the AOF: until the scheduler reconnects and sets it again, the worker gets WRONGPASS and retries.
    await waitFor(async () => (await w.get(`${keys.queuePrefix("ep-a")}:before`)) === "1", 30_000);
    await noperm(w.get(`${keys.queuePrefix("ep-b")}:secret`));
  });
});

describe("fail open", () => {
  it("where the scheduler's user may not run ACL SETUSER: warns once, hands out the scheduler's URL, and never throws", async () => {
    await admin.call("ACL", "SETUSER", "sched-no-acl", "reset", "on", `>${"s".repeat(40)}`, "~*", "&*", "+@all", "-acl");
    const schedUrl = server.url.replace("redis://", `redis://sched-no-acl:${"s".repeat(40)}@`);
    const sched = client(schedUrl);
    const { u, logged } = users({ redis: sched, redisUrl: schedUrl });
    expect(await u.create("ep-a", "w-3")).toBe(schedUrl);
    expect(await u.create("ep-a", "w-4")).toBe(schedUrl);
    expect(u.active).toBe(false);
    expect(logged.filter((l) => l.level === "warn")).toEqual([expect.objectContaining({ msg: expect.stringMatching(/refused ACL SETUSER/), error: expect.stringMatching(/NOPERM/) })]);
    await u.remove("ep-a", "w-3");
    expect(await u.sweep(async () => false)).toEqual({ removed: [], restored: [] });
  });

  it("switched off: hands out the scheduler's URL and sends no ACL command", async () => {
    const before = (await admin.call("ACL", "USERS")) as string[];
    const { u } = users({ enabled: false });
    expect(await u.create("ep-a", "w-5")).toBe(server.url);
    await u.remove("ep-a", "w-5");
    expect(await admin.call("ACL", "USERS")).toEqual(before);
  });
});
