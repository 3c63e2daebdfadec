import { describe, expect, it } from "vitest";
import { RedisKeys } from "../queue/keys.ts";
import { globLiteral, parseWorkerUserName, prefixTag, workerAclRules, workerRedisUrl, workerUserName } from "./worker-acl.ts";

const PASSWORD = "p".repeat(64);

describe("worker ACL users", () => {
  it("names a user per worker, telling installation, endpoint and worker apart, and reads the name back", () => {
    const name = workerUserName("{hearth}", "abc123", "w-xyz");
    expect(name).toBe(`hearth-w:${prefixTag("{hearth}")}:abc123:w-xyz`);
    expect(parseWorkerUserName(name)).toEqual({ tag: prefixTag("{hearth}"), endpointId: "abc123", workerId: "w-xyz" });
    expect(prefixTag("{hearth}")).not.toBe(prefixTag("{other}"));
    expect(parseWorkerUserName("default")).toBeUndefined();
    expect(parseWorkerUserName("hearth-w:tag:ep")).toBeUndefined();
    expect(() => workerUserName("{hearth}", "a b", "w")).toThrow();
    expect(() => workerUserName("{hearth}", "a:b", "w")).toThrow();
  });

  it("limits keys and channels to the endpoint's own, and starts from nothing", () => {
    const rules = workerAclRules(new RedisKeys("{hearth}"), "abc123", PASSWORD);
    expect(rules.slice(0, 8)).toEqual(["reset", "resetkeys", "resetchannels", "on", `>${PASSWORD}`, "~{hearth}:ep.abc123:*", "%W~{hearth}:offload:requests", "&{hearth}:ep.abc123:*"]);
    expect(rules).toContain("-@all");
    expect(rules.indexOf("-@dangerous")).toBeLessThan(rules.indexOf("+info"));
    for (const denied of ["-scan", "-randomkey", "-pubsub", "-function", "-client|tracking"]) expect(rules).toContain(denied);
    expect(() => workerAclRules(new RedisKeys("{hearth}"), "abc123", "short")).toThrow();
  });

  it("escapes glob characters, so an id cannot widen the pattern", () => {
    expect(globLiteral("a*b?c[d]e\\f")).toBe("a\\*b\\?c\\[d\\]e\\\\f");
    expect(workerAclRules(new RedisKeys("{h*}"), "e?", PASSWORD)).toContain("~{h\\*}:ep.e\\?:*");
  });

  it("puts the worker's user into the scheduler's URL, keeping host, port, TLS and database", () => {
    const url = workerRedisUrl("rediss://sched:old@redis.internal:6380/3", "hearth-w:t:ep:w-1", PASSWORD);
    const parsed = new URL(url);
    expect(parsed.protocol).toBe("rediss:");
    expect(parsed.host).toBe("redis.internal:6380");
    expect(parsed.pathname).toBe("/3");
    expect(decodeURIComponent(parsed.username)).toBe("hearth-w:t:ep:w-1");
    expect(parsed.password).toBe(PASSWORD);
  });
});
