import { describe, expect, it } from "vitest";
import { workerEnvironment } from "./worker-environment.ts";

describe("workerEnvironment", () => {
  const scheduler = {
    PATH: "/usr/bin",
    HOME: "/root",
    LANG: "C.UTF-8",
    LC_ALL: "C.UTF-8",
    NODE_OPTIONS: "--max-old-space-size=4096",
    NODE_EXTRA_CA_CERTS: "/etc/ssl/extra.pem",
    CUDA_VISIBLE_DEVICES: "0",
    NVIDIA_VISIBLE_DEVICES: "all",
    HEARTH_MODEL_CACHE_DIR: "/models",
    HEARTH_S3_ENDPOINT: "http://minio:9000",
    HEARTH_STREAM_LINGER_MS: "2",
    HEARTH_ENGINE_USER: "hearth-engine",
    REDIS_URL: "redis://:platform@redis:6379",
    DATABASE_URL: "postgres://hearth:secret@db/hearth",
    HEARTH_ADMIN_TOKEN: "hadm_secret",
    HEARTH_SECRETS_KEY: "k",
    HEARTH_WORKER_REDIS_ACL: "on",
    HEARTH_SCHEDULER_TICK_MS: "1000",
    AWS_ACCESS_KEY_ID: "AKIA",
    AWS_SECRET_ACCESS_KEY: "s",
    AWS_SESSION_TOKEN: "t",
    KUBECONFIG: "/root/.kube/config",
    NODE_AUTH_TOKEN: "npm_secret",
    PGPASSWORD: "pw",
  };

  it("passes what runs node and reaches the GPUs, and the worker settings the worker config reads", () => {
    expect(workerEnvironment(scheduler)).toEqual({
      PATH: "/usr/bin",
      HOME: "/root",
      LANG: "C.UTF-8",
      LC_ALL: "C.UTF-8",
      NODE_OPTIONS: "--max-old-space-size=4096",
      NODE_EXTRA_CA_CERTS: "/etc/ssl/extra.pem",
      CUDA_VISIBLE_DEVICES: "0",
      NVIDIA_VISIBLE_DEVICES: "all",
      HEARTH_MODEL_CACHE_DIR: "/models",
      HEARTH_S3_ENDPOINT: "http://minio:9000",
      HEARTH_STREAM_LINGER_MS: "2",
      HEARTH_ENGINE_USER: "hearth-engine",
    });
  });

  it("drops every platform secret and the scheduler's own Redis credential", () => {
    const env = workerEnvironment(scheduler);
    for (const name of ["REDIS_URL", "DATABASE_URL", "HEARTH_ADMIN_TOKEN", "HEARTH_SECRETS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "KUBECONFIG", "NODE_AUTH_TOKEN", "PGPASSWORD"]) {
      expect(env).not.toHaveProperty(name);
    }
  });
});
