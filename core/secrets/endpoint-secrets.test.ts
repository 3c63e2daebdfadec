import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { engineSpec, storedEngineSpec, type StoredEngineSpec } from "../contracts/endpoint.ts";
import { openEngine, sealEngine, secretPaths, viewEngine } from "./endpoint-secrets.ts";
import { SecretBox } from "./secret-box.ts";

const box = new SecretBox(randomBytes(32));
const openai = (extra: Record<string, unknown>) => engineSpec.parse({ kind: "openai", profile: "embedded", model: "s3://tenant-bucket/m.gguf", ...extra });
const sealed = (engine: ReturnType<typeof openai>, current?: StoredEngineSpec) => {
  const r = sealEngine(engine, { endpointId: "ep_1", box, ...(current && { current }) });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return storedEngineSpec.parse(r.engine);
};

describe("endpoint secrets", () => {
  const engine = openai({
    env: { HF_TOKEN: { value: "hf_x", secret: true }, LOG_LEVEL: "debug", MODE: { value: "fast" } },
    modelCredentials: { accessId: "AKIATENANT", accessSecret: "tenant-secret", endpointUrl: "https://s3.tenant.example" },
  });

  it("seals secret values, keeps plain ones, and shows neither secret", () => {
    const stored = sealed(engine);
    expect(JSON.stringify(stored)).not.toMatch(/hf_x|tenant-secret/);
    expect(stored.env).toMatchObject({ LOG_LEVEL: "debug", MODE: "fast", HF_TOKEN: { secret: true, sealed: expect.stringMatching(/^hs1\./) } });
    const view = viewEngine(stored);
    expect(view).toMatchObject({ env: { HF_TOKEN: { secret: true }, LOG_LEVEL: "debug", MODE: "fast" }, modelCredentials: { accessId: "AKIATENANT", endpointUrl: "https://s3.tenant.example" } });
    expect(JSON.stringify(view)).not.toMatch(/hf_x|tenant-secret|sealed/);
    expect(secretPaths(engine)).toEqual(["env.HF_TOKEN", "modelCredentials.accessSecret"]);
  });

  it("opens them for the same endpoint only, with the engine stripped of both", () => {
    const r = openEngine(sealed(engine), "ep_1", box);
    expect(r).toEqual({
      ok: true,
      opened: {
        engine: expect.not.objectContaining({ env: expect.anything() }),
        env: { HF_TOKEN: "hf_x", LOG_LEVEL: "debug", MODE: "fast" },
        modelCredentials: { accessId: "AKIATENANT", accessSecret: "tenant-secret", endpointUrl: "https://s3.tenant.example" },
      },
    });
    if (r.ok) expect(r.opened.engine).not.toHaveProperty("modelCredentials");
    expect(openEngine(sealed(engine), "ep_2", box)).toMatchObject({ ok: false, reason: expect.stringMatching(/^env\/HF_TOKEN: .*fails authentication/) });
    expect(openEngine(sealed(engine), "ep_1", undefined)).toMatchObject({ ok: false, reason: expect.stringMatching(/HEARTH_SECRETS_KEY is not set/) });
  });

  it("keeps stored secrets on a change that names them without values", () => {
    const before = sealed(engine);
    const after = sealed(openai({ env: { HF_TOKEN: { secret: true }, LOG_LEVEL: "info" }, modelCredentials: { accessId: "AKIATENANT" } }), before);
    const r = openEngine(after, "ep_1", box);
    expect(r.ok && r.opened.env).toEqual({ HF_TOKEN: "hf_x", LOG_LEVEL: "info" });
    expect(r.ok && r.opened.modelCredentials).toEqual({ accessId: "AKIATENANT", accessSecret: "tenant-secret" });
  });

  it("refuses to keep what is not stored, and to seal without a key", () => {
    const keep = sealEngine(openai({ env: { NEW: { secret: true } }, modelCredentials: { accessId: "OTHER" } }), { endpointId: "ep_1", box, current: sealed(engine) });
    expect(keep).toMatchObject({ ok: false, issues: [{ path: "env.NEW", code: "invalid" }, { path: "modelCredentials.accessSecret", code: "invalid" }] });
    expect(sealEngine(engine, { endpointId: "ep_1" })).toMatchObject({ ok: false, issues: [{ path: "env.HF_TOKEN", code: "secrets_unavailable" }, { path: "modelCredentials.accessSecret", code: "secrets_unavailable" }] });
    // Plain values need no key.
    expect(sealEngine(openai({ env: { A: "1" } }), { endpointId: "ep_1" })).toMatchObject({ ok: true, engine: { env: { A: "1" } } });
  });

  it("validates names: pattern, platform names and prefixes, count and size", () => {
    const issue = (env: unknown) => engineSpec.safeParse({ kind: "handler", module: "/m.mjs", env }).error?.issues.map((i) => i.path.join("."));
    expect(issue({ "bad-name": "x" })).toEqual(["env.bad-name"]);
    expect(issue({ "1X": "x" })).toEqual(["env.1X"]);
    for (const name of ["HEARTH_ENGINE", "REDIS_URL", "DATABASE_URL", "AWS_ACCESS_KEY_ID", "RUNPOD_POD_ID", "PATH", "NODE_OPTIONS", "LD_PRELOAD"]) {
      expect(issue({ [name]: "x" })).toEqual([`env.${name}`]);
    }
    expect(issue({ A: "x\0y" })).toEqual(["env.A"]);
    expect(issue(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, "x"])))).toEqual(["env"]);
    expect(issue(Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`V${i}`, "x".repeat(8000)])))).toEqual(["env"]);
    expect(issue({ OK_NAME: "x", _PRIVATE: { value: "y", secret: true } })).toBeUndefined();
  });
});
