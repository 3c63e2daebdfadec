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

  it("gives workers Redis users of their own unless HEARTH_WORKER_REDIS_ACL is off, and reads HEARTH_ENGINE_USER as given", () => {
    expect(loadSchedulerConfig({}).workerRedisAcl).toBe(true);
    expect(loadSchedulerConfig({ HEARTH_WORKER_REDIS_ACL: "off" }).workerRedisAcl).toBe(false);
    expect(loadSchedulerConfig({ HEARTH_WORKER_REDIS_ACL: "FALSE" }).workerRedisAcl).toBe(false);
    expect(() => loadSchedulerConfig({ HEARTH_WORKER_REDIS_ACL: "maybe" })).toThrow(/HEARTH_WORKER_REDIS_ACL: must be on or off/);
    const worker = { HEARTH_ENDPOINT_ID: "ep", HEARTH_WORKER_ID: "w", HEARTH_ENGINE: "{}" };
    expect(loadWorkerConfig(worker).engineUser).toBeUndefined();
    expect(loadWorkerConfig({ ...worker, HEARTH_ENGINE_USER: "hearth-engine" }).engineUser).toBe("hearth-engine");
  });

  it("serves the scheduler's /metrics and keeps the workers' discovery file only when asked, and turns worker metrics on with either", () => {
    expect(loadSchedulerConfig({})).toMatchObject({ workerMetrics: false });
    expect(loadSchedulerConfig({}).metricsListen).toBeUndefined();
    expect(loadSchedulerConfig({}).workerSdFile).toBeUndefined();
    expect(loadSchedulerConfig({ HEARTH_SCHEDULER_METRICS_PORT: "9465" })).toMatchObject({ metricsListen: { host: "127.0.0.1", port: 9465 }, workerMetrics: true });
    expect(loadSchedulerConfig({ HEARTH_SCHEDULER_METRICS_PORT: "0", HEARTH_SCHEDULER_METRICS_HOST: "10.0.0.2" }).metricsListen).toEqual({ host: "10.0.0.2", port: 0 });
    expect(loadSchedulerConfig({ HEARTH_WORKER_SD_FILE: "/var/lib/hearth/workers.json" })).toMatchObject({ workerSdFile: "/var/lib/hearth/workers.json", workerMetrics: true });
    expect(() => loadSchedulerConfig({ HEARTH_SCHEDULER_METRICS_PORT: "70000" })).toThrow(/HEARTH_SCHEDULER_METRICS_PORT/);
    const worker = { HEARTH_ENDPOINT_ID: "ep", HEARTH_WORKER_ID: "w", HEARTH_ENGINE: "{}" };
    expect(loadWorkerConfig(worker).metrics).toBe(false);
    expect(loadWorkerConfig({ ...worker, HEARTH_WORKER_METRICS: "on" }).metrics).toBe(true);
  });
});
