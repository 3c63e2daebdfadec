import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startOwnRedis, type OwnRedis } from "../../test/support/own-redis.ts";
import { freePort } from "../../test/support/services.ts";
import { classifyProbeReply, defaultUserWarning, probeDefaultUser, warnIfRedisDefaultUserOpen, withoutCredentials } from "./default-user-check.ts";

describe("classifyProbeReply and defaultUserWarning", () => {
  it("reads PONG as open, NOAUTH as closed, NOPERM as open with fewer rights, anything else as unknown", () => {
    expect(classifyProbeReply({ ok: true, value: "PONG" })).toEqual({ state: "open" });
    expect(classifyProbeReply({ ok: false, message: "NOAUTH Authentication required." })).toEqual({ state: "closed" });
    expect(classifyProbeReply({ ok: false, message: "NOPERM User default has no permissions to run the 'ping' command" })).toMatchObject({ state: "open-limited" });
    expect(classifyProbeReply({ ok: false, message: "connect ECONNREFUSED 127.0.0.1:1" })).toEqual({ state: "unknown", detail: "connect ECONNREFUSED 127.0.0.1:1" });
    expect(defaultUserWarning({ state: "closed" })).toBeUndefined();
    expect(defaultUserWarning({ state: "open" })).toMatch(/default user is on without a password.*ACL SETUSER default off/);
  });

  it("probes without the URL's credentials, keeping host, port, TLS and database", () => {
    expect(withoutCredentials("rediss://hearth-api:s%3Acret@redis.internal:6380/2")).toBe("rediss://redis.internal:6380/2");
  });
});

/** A test-owned server: its default user is changed, which the shared one's must never be. */
describe("probeDefaultUser against a real Redis", () => {
  let server: OwnRedis;
  let admin: Redis;
  beforeAll(async () => {
    server = await startOwnRedis({ aof: false });
    const boot = new Redis(server.url);
    await boot.call("ACL", "SETUSER", "admin", "on", ">admin-password-0123456789", "~*", "&*", "+@all");
    boot.disconnect();
    admin = new Redis(server.url.replace("redis://", "redis://admin:admin-password-0123456789@"));
  });
  afterAll(async () => {
    admin?.disconnect();
    await server?.destroy();
  });

  it("warns once while the default user is open, and not once it is off, password-protected or closed by requirepass", async () => {
    const warnings: string[] = [];
    await warnIfRedisDefaultUserOpen(server.url, (m) => warnings.push(m));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/default user is on without a password/);
    // A URL with credentials of its own is probed without them: what an intruder would get.
    expect((await probeDefaultUser(server.url.replace("redis://", "redis://admin:admin-password-0123456789@"))).state).toBe("open");

    await admin.call("ACL", "SETUSER", "default", "resetkeys", "-@all");
    expect(await probeDefaultUser(server.url)).toMatchObject({ state: "open-limited", detail: expect.stringMatching(/^NOPERM/) });

    await admin.call("ACL", "SETUSER", "default", "off");
    expect(await probeDefaultUser(server.url)).toEqual({ state: "closed" });

    await admin.call("ACL", "SETUSER", "default", "on", "~*", "&*", "+@all", ">a-password-of-the-default-user");
    expect(await probeDefaultUser(server.url)).toEqual({ state: "closed" });
    const silent: string[] = [];
    await warnIfRedisDefaultUserOpen(server.url, (m) => silent.push(m));
    expect(silent).toEqual([]);
  });

  it("says it could not check when nothing answers", async () => {
    const port = await freePort();
    expect(await probeDefaultUser(`redis://127.0.0.1:${port}`, 2000)).toMatchObject({ state: "unknown", detail: expect.stringMatching(/ECONNREFUSED/) });
  });
});
