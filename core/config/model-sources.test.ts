import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ConfigError } from "./parse-env.ts";
import { defaultModelDir } from "./model-sources.ts";
import { loadApiConfig, loadSchedulerConfig, loadWorkerConfig } from "./process-configs.ts";

const worker = { HEARTH_ENDPOINT_ID: "ep", HEARTH_WORKER_ID: "w", HEARTH_ENGINE: "{}" };

describe("model source and secrets settings", () => {
  it("default to the project's model directory, no allow-list and no secrets key", () => {
    const c = loadApiConfig({});
    expect(c.modelDirs).toEqual([defaultModelDir]);
    expect(c.modelAllowList.entries).toEqual([]);
    expect(c.secretsKey).toBeUndefined();
    expect(loadWorkerConfig(worker).modelDirs).toEqual([defaultModelDir]);
  });

  it("read every process's HEARTH_MODEL_DIRS and HEARTH_MODEL_ALLOWLIST alike", () => {
    const env = { HEARTH_MODEL_DIRS: "/models:/mnt/weights", HEARTH_MODEL_ALLOWLIST: "s3://weights,10.0.0.0/8,models.corp.example" };
    for (const c of [loadApiConfig(env), loadSchedulerConfig(env), loadWorkerConfig({ ...worker, ...env })]) {
      expect(c.modelDirs).toEqual(["/models", "/mnt/weights"]);
      expect([...c.modelAllowList.s3Buckets]).toEqual(["weights"]);
      expect([...c.modelAllowList.hosts]).toEqual(["models.corp.example"]);
    }
  });

  it("take HEARTH_SECRETS_KEY as hex or base64 of 32 bytes", () => {
    const key = randomBytes(32);
    expect(loadApiConfig({ HEARTH_SECRETS_KEY: key.toString("hex") }).secretsKey?.equals(key)).toBe(true);
    expect(loadSchedulerConfig({ HEARTH_SECRETS_KEY: key.toString("base64") }).secretsKey?.equals(key)).toBe(true);
  });

  it("stop the process at start naming the variable, never echoing a key", () => {
    const badKey = randomBytes(16).toString("hex");
    const fail = (env: NodeJS.ProcessEnv) => {
      try {
        loadApiConfig(env);
      } catch (err) {
        expect(err).toBeInstanceOf(ConfigError);
        return (err as Error).message;
      }
      throw new Error("expected a ConfigError");
    };
    const keyMessage = fail({ HEARTH_SECRETS_KEY: badKey });
    expect(keyMessage).toMatch(/HEARTH_SECRETS_KEY: must be 32 random bytes/);
    expect(keyMessage).not.toContain(badKey);
    expect(fail({ HEARTH_MODEL_ALLOWLIST: "s3://ok-bucket, 10.0.0.1/8" })).toMatch(/HEARTH_MODEL_ALLOWLIST: 10\.0\.0\.1\/8: not an s3:\/\/bucket/);
    expect(fail({ HEARTH_MODEL_DIRS: "relative/models" })).toMatch(/HEARTH_MODEL_DIRS/);
  });
});
