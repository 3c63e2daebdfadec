import { describe, expect, it } from "vitest";
import { engineEnvironment } from "./engine-environment.ts";

/** A worker's environment as it is on a GPU host: what engines need beside the platform's credentials. */
const worker = {
  PATH: "/usr/local/bin:/usr/bin",
  HOME: "/root",
  TMPDIR: "/var/tmp",
  LANG: "C.UTF-8",
  LC_ALL: "C.UTF-8",
  LD_LIBRARY_PATH: "/usr/local/cuda/lib64",
  CUDA_VISIBLE_DEVICES: "0,1",
  CUDA_HOME: "/usr/local/cuda",
  NVIDIA_VISIBLE_DEVICES: "all",
  NCCL_SOCKET_IFNAME: "eth0",
  HF_HOME: "/models/hf",
  PYTHONPATH: "/app",
  REDIS_URL: "redis://hearth-w:secret@redis:6379",
  DATABASE_URL: "postgres://hearth:secret@db/hearth",
  HEARTH_ADMIN_TOKEN: "hadm_secret",
  HEARTH_SECRETS_KEY: "k",
  HEARTH_ENGINE: "{}",
  AWS_ACCESS_KEY_ID: "AKIA",
  AWS_SECRET_ACCESS_KEY: "s",
  HF_TOKEN: "hf_secret",
  NODE_AUTH_TOKEN: "npm_secret",
  GITHUB_TOKEN: "ghp",
  UNSET: undefined,
};

describe("engineEnvironment", () => {
  it("gives a GPU engine its devices, libraries, caches and locale, a private HOME and TMPDIR, and nothing of the worker's own", () => {
    const env = engineEnvironment({ profile: "vllm", inherited: worker, home: "/tmp/hearth-engine-x", port: 41000, profileEnv: { HF_HUB_OFFLINE: "1" } });
    expect(env).toEqual({
      PATH: "/usr/local/bin:/usr/bin",
      LANG: "C.UTF-8",
      LC_ALL: "C.UTF-8",
      LD_LIBRARY_PATH: "/usr/local/cuda/lib64",
      CUDA_VISIBLE_DEVICES: "0,1",
      CUDA_HOME: "/usr/local/cuda",
      NVIDIA_VISIBLE_DEVICES: "all",
      NCCL_SOCKET_IFNAME: "eth0",
      HF_HOME: "/models/hf",
      PYTHONPATH: "/app",
      HF_HUB_OFFLINE: "1",
      HOME: "/tmp/hearth-engine-x",
      TMPDIR: "/tmp/hearth-engine-x",
      PORT: "41000",
    });
  });

  it("gives the embedded engine (node) only PATH, locale and its own HOME, TMPDIR and PORT", () => {
    const env = engineEnvironment({ profile: "embedded", inherited: worker, home: "/h", port: 1 });
    expect(Object.keys(env).sort()).toEqual(["HOME", "LANG", "LC_ALL", "LD_LIBRARY_PATH", "PATH", "PORT", "TMPDIR"]);
  });

  it("never passes a credential, whatever the profile", () => {
    for (const profile of ["vllm", "sglang", "trtllm", "llamacpp", "embedded"] as const) {
      const env = engineEnvironment({ profile, inherited: worker, home: "/h", port: 1 });
      for (const name of ["REDIS_URL", "DATABASE_URL", "HEARTH_ADMIN_TOKEN", "HEARTH_SECRETS_KEY", "HEARTH_ENGINE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "NODE_AUTH_TOKEN", "GITHUB_TOKEN"]) {
        expect(env, `${profile} ${name}`).not.toHaveProperty(name);
      }
      expect(Object.values(env).join(" ")).not.toMatch(/secret/);
    }
  });

  it("adds the endpoint's own variables, which cannot move HOME, TMPDIR, PORT or override what the profile sets", () => {
    const env = engineEnvironment({
      profile: "sglang",
      inherited: worker,
      home: "/h",
      port: 7,
      profileEnv: { HF_HUB_OFFLINE: "1" },
      endpointEnv: { SGLANG_LOG_LEVEL: "debug", HOME: "/root", TMPDIR: "/", PORT: "80", HF_HUB_OFFLINE: "0", PATH: "/opt/bin" },
    });
    expect(env).toMatchObject({ SGLANG_LOG_LEVEL: "debug", HOME: "/h", TMPDIR: "/h", PORT: "7", HF_HUB_OFFLINE: "1", PATH: "/opt/bin" });
  });
});
