import { describe, expect, it } from "vitest";
import { ConfigError } from "./parse-env.ts";
import { loadApiConfig, loadSchedulerConfig, loadWorkerConfig } from "./process-configs.ts";

describe("process configs", () => {
  it("applies the documented defaults and generates an admin token when unset", () => {
    const c = loadApiConfig({});
    expect(c).toMatchObject({
      databaseUrl: "postgres://postgres@127.0.0.1:5432/hearth",
      redisUrl: "redis://127.0.0.1:6379",
      redisPrefix: "{hearth}",
      port: 8080,
      adminTokenGenerated: true,
    });
    expect(c.adminToken).toMatch(/^hadm_.{20,}/);
    expect(c.handlerDirs).toHaveLength(1);
    expect(loadApiConfig({}).adminToken).not.toBe(c.adminToken);
  });

  it("fails at start naming each bad variable", () => {
    const bad = () => loadApiConfig({ REDIS_URL: "http://nope", PORT: "eighty", HEARTH_HANDLER_DIRS: "relative/dir" });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/REDIS_URL/);
    expect(bad).toThrow(/PORT/);
    expect(bad).toThrow(/HEARTH_HANDLER_DIRS/);
    expect(() => loadApiConfig({ HEARTH_ADMIN_TOKEN: "short" })).toThrow(/HEARTH_ADMIN_TOKEN/);
    expect(() => loadSchedulerConfig({ DATABASE_URL: "mysql://x" })).toThrow(/DATABASE_URL/);
    expect(() => loadWorkerConfig({})).toThrow(/HEARTH_ENDPOINT_ID/);
  });

  it("splits HEARTH_HANDLER_DIRS on colons", () => {
    expect(loadApiConfig({ HEARTH_HANDLER_DIRS: "/a:/b" }).handlerDirs).toEqual(["/a", "/b"]);
  });
});
