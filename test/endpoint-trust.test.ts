import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { systemResolveAll } from "../core/net/host-resolution.ts";
import { apiClient } from "./support/api-client.ts";
import { findEngineProcesses } from "./support/engine-processes.ts";
import { fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { freePort, waitFor } from "./support/services.ts";

/**
 * The tenant trust boundary through the real API, scheduler and worker processes: which model
 * sources an endpoint may name (refused at creation with a 400 naming `engine.model`), and the
 * endpoint's secrets (sealed in Postgres, absent from every response, opened only into that
 * endpoint's workers). The download-time checks are test/model-source-policy.test.ts's.
 */

interface S3rverInstance {
  run(): Promise<unknown>;
  close(): Promise<void>;
  httpServer: http.Server;
}
const require = createRequire(import.meta.url);
const S3rver = require("s3rver") as new (options: Record<string, unknown>) => S3rverInstance;
const s3rverAccounts = require("s3rver/lib/models/account") as { DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void } };

const OPERATOR_KEY = { id: "S3RVER", secret: "S3RVER" };
const TENANT_KEY = { id: "TENANTKEYE2E01", secret: `tenant-s3-secret-${randomBytes(6).toString("hex")}` };
const HF_TOKEN = `hf_secret_${randomBytes(8).toString("hex")}`;
const DB_PASSWORD = `db-password-${randomBytes(8).toString("hex")}`;

describe("tenant trust boundary: model sources and endpoint secrets", () => {
  let stack: Stack;
  let key: string;
  let root: string;
  let modelsDir: string;
  let cacheDir: string;
  let s3: S3rverInstance;
  let s3Endpoint: string;
  /** `<access key id> <method> <path>` of every request s3rver received. */
  const s3Requests: string[] = [];
  let allowedServer: http.Server;
  let allowedBase: string;
  let localPort: number;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "hearth-trust-"));
    modelsDir = join(root, "models");
    await mkdir(join(root, "outside"), { recursive: true });
    await mkdir(modelsDir, { recursive: true });
    const tiny = await readFile(ensureTinyLlamaFile(join(modelsDir, "tiny-llama.gguf")));
    await writeFile(join(root, "outside", "secret.gguf"), "not yours");
    await symlink(join(root, "outside", "secret.gguf"), join(modelsDir, "link.gguf"));
    // The workers' download cache, of this test alone (a cache hit from another run would hide the download) and
    // readable by the engine's user.
    cacheDir = join(root, "cache");
    await chmod(root, 0o755);

    s3rverAccounts.DUMMY_ACCOUNT.createKeyPair(TENANT_KEY.id, TENANT_KEY.secret);
    const port = await freePort();
    s3 = new S3rver({ address: "127.0.0.1", port, silent: true, directory: join(root, "s3rver") });
    await s3.run();
    s3.httpServer.on("request", (req: http.IncomingMessage) => {
      const id = /Credential=([^/]+)\//.exec(req.headers.authorization ?? "")?.[1] ?? "(unsigned)";
      s3Requests.push(`${id} ${req.method} ${req.url}`);
    });
    s3Endpoint = `http://127.0.0.1:${port}`;
    const uploader = new S3Client({ endpoint: s3Endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: OPERATOR_KEY.id, secretAccessKey: OPERATOR_KEY.secret }, requestChecksumCalculation: "WHEN_REQUIRED" });
    for (const bucket of ["operator-models", "tenant-models"]) {
      await uploader.send(new CreateBucketCommand({ Bucket: bucket }));
      await uploader.send(new PutObjectCommand({ Bucket: bucket, Key: "llm/tiny-llama.gguf", Body: tiny }));
    }
    uploader.destroy();

    // A model server on a loopback address the operator allow-lists (127.0.0.2), beside one it does not (127.0.0.1).
    allowedServer = http.createServer((_req, res) => res.end("model"));
    await new Promise<void>((r) => allowedServer.listen(0, "127.0.0.2", r));
    allowedBase = `http://127.0.0.2:${(allowedServer.address() as { port: number }).port}`;
    localPort = await freePort();

    stack = await startStack({
      modelDirs: [modelsDir],
      modelAllowList: "s3://operator-models,127.0.0.2",
      secretsKey: randomBytes(32),
      operatorS3Env: { AWS_ACCESS_KEY_ID: OPERATOR_KEY.id, AWS_SECRET_ACCESS_KEY: OPERATOR_KEY.secret },
      // The scheduler's own environment holds the operator's credentials: they must not reach workers from there.
      workerInheritEnv: {
        ...process.env,
        AWS_ACCESS_KEY_ID: OPERATOR_KEY.id,
        AWS_SECRET_ACCESS_KEY: OPERATOR_KEY.secret,
        HEARTH_S3_ENDPOINT: s3Endpoint,
        HEARTH_MODEL_CACHE_DIR: cacheDir,
      },
    });
    key = await stack.tenant("trust");
  });

  afterAll(async () => {
    await stack?.close();
    await s3?.close();
    await new Promise((r) => allowedServer?.close(r));
    await rm(root, { recursive: true, force: true });
  });

  const create = (engine: Record<string, unknown>, extra: Record<string, unknown> = {}) => stack.call("POST", "/api/v1/endpoints", { key, body: { name: "ep", engine, ...extra } });
  const llm = (model: string, extra: Record<string, unknown> = {}) => ({ kind: "openai", profile: "embedded", model, args: { threads: 1, "ctx-size": 1024 }, concurrency: 2, ...extra });
  const expectRefused = async (engine: Record<string, unknown>, path: string) => {
    const r = await create(engine);
    expect(r.status, `${JSON.stringify(engine)} → ${JSON.stringify(r.body)}`).toBe(400);
    expect(r.body.issues.map((i: { path: string }) => i.path)).toEqual([path]);
    return r.body as { error: string; issues: { path: string; message: string }[] };
  };

  describe("model sources at creation", () => {
    it("refuses local files outside HEARTH_MODEL_DIRS, however they are spelled", async () => {
      for (const model of ["/etc/passwd", "file:///etc/passwd", `${modelsDir}/../outside/secret.gguf`, pathToFileURL(join(modelsDir, "link.gguf")).href, "/etc/no-such-file"]) {
        const body = await expectRefused(llm(model), "engine.model");
        expect(body.issues[0]!.message).toMatch(/outside the directories allowed by HEARTH_MODEL_DIRS/);
      }
    });

    it("refuses loopback, private, mapped, metadata and local names, and plain http", async () => {
      for (const model of [
        `http://127.0.0.1:${localPort}/m.gguf`,
        "https://10.0.0.1/m.gguf",
        "https://[::ffff:127.0.0.1]/m.gguf",
        "https://169.254.169.254/latest/meta-data/",
        "https://metadata.google.internal/computeMetadata/v1/",
        `https://localhost:${localPort}/m.gguf`,
        "http://93.184.215.14/m.gguf",
      ]) {
        const body = await expectRefused(llm(model), "engine.model");
        expect(body.issues[0]!.message).toMatch(/HEARTH_MODEL_ALLOWLIST/);
      }
    });

    it("refuses a name this host resolves to 127.0.0.1 (its hosts file)", async (ctx) => {
      const name = await loopbackName();
      if (name === undefined) return ctx.skip();
      const body = await expectRefused(llm(`https://${name}:${localPort}/m.gguf`), "engine.model");
      expect(body.issues[0]!.message).toMatch(new RegExp(`${name} resolves to 127\\.`));
    });

    it("refuses s3:// outside the allow-listed buckets without the tenant's credentials, and credentials where they mean nothing", async () => {
      const body = await expectRefused(llm("s3://tenant-models/llm/tiny-llama.gguf"), "engine.model");
      expect(body.issues[0]!.message).toMatch(/give engine\.modelCredentials/);
      await expectRefused(llm("https://models.example.test/m.gguf", { modelCredentials: { accessId: "AKIA1", accessSecret: "x" } }), "engine.modelCredentials");
      await expectRefused(llm("s3://tenant-models/m.gguf", { modelCredentials: { accessId: "AKIA1", accessSecret: "x", endpointUrl: `http://127.0.0.1:${localPort}` } }), "engine.modelCredentials.endpointUrl");
    });

    it("accepts what the policy allows, and refuses the same on a change", async () => {
      for (const model of [
        join(modelsDir, "tiny-llama.gguf"),
        pathToFileURL(join(modelsDir, "later", "not-yet.gguf")).href, // inside, checked again by the worker at download
        "https://models.example.test/m.gguf", // does not resolve here: checked by the worker on the address it connects to
        `${allowedBase}/m.gguf`,
        "s3://operator-models/llm/tiny-llama.gguf",
      ]) {
        const r = await create(llm(model), { workersMax: 0 });
        expect(r.status, `${model}: ${JSON.stringify(r.body)}`).toBe(200);
      }
      const ok = await create(llm("s3://tenant-models/llm/tiny-llama.gguf", { modelCredentials: { accessId: "AKIA1", accessSecret: "x" } }), { workersMax: 0 });
      expect(ok.status).toBe(200);
      const patched = await stack.call("PATCH", `/api/v1/endpoints/${ok.body.id}`, { key, body: { engine: llm("/etc/passwd") } });
      expect(patched.status).toBe(400);
      expect(patched.body.issues).toEqual([expect.objectContaining({ path: "engine.model" })]);
    });
  });

  describe("endpoint environment", () => {
    it("refuses bad and platform names with 400 naming the key, and too many variables", async () => {
      const handler = (env: unknown) => ({ kind: "handler", module: join(fixturesDir, "env-echo.mjs"), env });
      await expectRefused(handler({ "bad-name": "x" }), "engine.env.bad-name");
      for (const name of ["HEARTH_ENGINE", "REDIS_URL", "DATABASE_URL", "AWS_SECRET_ACCESS_KEY", "RUNPOD_API_KEY", "PATH", "NODE_OPTIONS", "LD_PRELOAD"]) {
        await expectRefused(handler({ [name]: "x" }), `engine.env.${name}`);
      }
      await expectRefused(handler(Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, "x"]))), "engine.env");
      await expectRefused(handler({ BIG: "x".repeat(9000) }), "engine.env.BIG");
    });
  });

  describe("endpoint secrets", () => {
    let handlerEp: string;
    const secretEnv = { HF_TOKEN: { value: HF_TOKEN, secret: true }, DB_PASSWORD: { value: DB_PASSWORD, secret: true }, LOG_LEVEL: "debug" };
    const noSecretIn = (body: unknown) => {
      const text = JSON.stringify(body);
      for (const secret of [HF_TOKEN, DB_PASSWORD, TENANT_KEY.secret]) expect(text).not.toContain(secret);
      expect(text).not.toContain("sealed");
    };

    it("are never in a response: create, get, list and patch show {secret: true}", async () => {
      const created = await create({ kind: "handler", module: join(fixturesDir, "env-echo.mjs"), env: secretEnv }, { workersMin: 1, workersMax: 1 });
      expect(created.status).toBe(200);
      handlerEp = created.body.id;
      expect(created.body.engine.env).toEqual({ HF_TOKEN: { secret: true }, DB_PASSWORD: { secret: true }, LOG_LEVEL: "debug" });
      noSecretIn(created.body);
      const got = await stack.call("GET", `/api/v1/endpoints/${handlerEp}`, { key });
      expect(got.body.engine.env).toEqual(created.body.engine.env);
      noSecretIn(got.body);
      noSecretIn((await stack.call("GET", "/api/v1/endpoints", { key })).body);
      // A change that only renames a setting, keeping the secrets by `{"secret": true}` (what GET shows).
      const patched = await stack.call("PATCH", `/api/v1/endpoints/${handlerEp}`, { key, body: { engine: { ...got.body.engine, env: { ...got.body.engine.env, LOG_LEVEL: "info" } } } });
      expect(patched.status).toBe(200);
      expect(patched.body.engine.env).toEqual({ HF_TOKEN: { secret: true }, DB_PASSWORD: { secret: true }, LOG_LEVEL: "info" });
      noSecretIn(patched.body);
      // Keeping a secret that was never stored is refused, naming it.
      const bad = await stack.call("PATCH", `/api/v1/endpoints/${handlerEp}`, { key, body: { engine: { ...got.body.engine, env: { NEVER_SET: { secret: true } } } } });
      expect(bad.status).toBe(400);
      expect(bad.body.issues).toEqual([expect.objectContaining({ path: "engine.env.NEVER_SET" })]);
    });

    it("are not in Postgres in plaintext", async () => {
      const rows = await stack.sql<{ engine: string }[]>`select engine::text as engine from endpoints`;
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) for (const secret of [HF_TOKEN, DB_PASSWORD, TENANT_KEY.secret]) expect(row.engine).not.toContain(secret);
      const [row] = await stack.sql<{ engine: { env: Record<string, unknown> } }[]>`select engine from endpoints where id = ${handlerEp}`;
      expect(row!.engine.env.HF_TOKEN).toEqual({ secret: true, sealed: expect.stringMatching(/^hs1\./) });
    });

    it("reach the endpoint's handler through process.env, kept across the change; the operator's credentials do not", async () => {
      // The worker was started by workersMin: 1, after the patch or before it; it gets the stored secrets either way.
      await waitFor(async () => (await stack.call("GET", `/v2/${handlerEp}/health`, { key })).body.workers.idle >= 1, 60_000);
      const names = ["HF_TOKEN", "DB_PASSWORD", "LOG_LEVEL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HEARTH_SECRETS_KEY", "HEARTH_ENDPOINT_ENV", "HEARTH_MODEL_CREDENTIALS", "DATABASE_URL"];
      const output = await runToCompletion(handlerEp, { names });
      expect(output).toMatchObject({ HF_TOKEN, DB_PASSWORD, AWS_ACCESS_KEY_ID: null, AWS_SECRET_ACCESS_KEY: null, HEARTH_SECRETS_KEY: null, HEARTH_ENDPOINT_ENV: null, HEARTH_MODEL_CREDENTIALS: null, DATABASE_URL: null });
      expect(["debug", "info"]).toContain(output.LOG_LEVEL);
    });

    it("download the tenant's model with the tenant's key, and reach its engine's environment (and nothing else does)", async () => {
      const mark = s3Requests.length;
      const created = await create(
        llm("s3://tenant-models/llm/tiny-llama.gguf", {
          modelCredentials: { accessId: TENANT_KEY.id, accessSecret: TENANT_KEY.secret },
          env: { HF_TOKEN: { value: HF_TOKEN, secret: true }, LOG_LEVEL: "debug" },
        }),
        { workersMin: 1, workersMax: 1 },
      );
      expect(created.status).toBe(200);
      expect(created.body.engine.modelCredentials).toEqual({ accessId: TENANT_KEY.id });
      noSecretIn(created.body);
      const ep = created.body.id as string;
      await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body.workers.idle >= 1, 90_000);
      const output = await runToCompletion(ep, { prompt: "Hello", sampling_params: { max_tokens: 3, temperature: 0 } });
      expect(output).toEqual([expect.objectContaining({ usage: expect.objectContaining({ output: expect.any(Number) }) })]);

      const downloads = s3Requests.slice(mark).filter((r) => r.includes("/tenant-models/"));
      expect(downloads.length).toBeGreaterThan(0);
      expect(new Set(downloads.map((r) => r.split(" ")[0]))).toEqual(new Set([TENANT_KEY.id]));

      const [engine] = findEngineProcesses(cacheDir);
      expect(engine).toBeDefined();
      const env = readFileSync(`/proc/${engine!.pid}/environ`, "utf8").split("\0");
      expect(env).toContain(`HF_TOKEN=${HF_TOKEN}`);
      expect(env).toContain("LOG_LEVEL=debug");
      expect(env.filter((v) => /^(AWS_|HEARTH_|REDIS_URL|DATABASE_URL)/.test(v))).toEqual([]);
      expect(env.join("\n")).not.toContain(TENANT_KEY.secret);
    });

    it("an allow-listed bucket is read with the operator's credentials, given to that worker only", async () => {
      const mark = s3Requests.length;
      const ep = (await create(llm("s3://operator-models/llm/tiny-llama.gguf"), { workersMin: 1, workersMax: 1 })).body.id as string;
      await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body.workers.idle >= 1, 90_000);
      const downloads = s3Requests.slice(mark).filter((r) => r.includes("/operator-models/"));
      expect(downloads.length).toBeGreaterThan(0);
      expect(new Set(downloads.map((r) => r.split(" ")[0]))).toEqual(new Set([OPERATOR_KEY.id]));
    });

    it("are refused with 400 secrets_unavailable where HEARTH_SECRETS_KEY is not set; plain values still work", async () => {
      let api: RunningApi | undefined;
      try {
        api = await startApiServer({ databaseUrl: stack.databaseUrl, redisUrl: stack.redisUrl, redisPrefix: stack.redisPrefix, handlerDirs: [fixturesDir], port: 0, host: "127.0.0.1", adminToken: "no-secrets-admin-token-0123456789" });
        const call = apiClient(api.url);
        const engine = (env: unknown) => ({ name: "ep", engine: { kind: "handler", module: join(fixturesDir, "env-echo.mjs"), env }, workersMax: 0 });
        const refused = await call("POST", "/api/v1/endpoints", { key, body: engine({ HF_TOKEN: { value: HF_TOKEN, secret: true } }) });
        expect(refused.status).toBe(400);
        expect(refused.body).toMatchObject({ code: "secrets_unavailable", issues: [{ path: "engine.env.HF_TOKEN" }] });
        expect(JSON.stringify(refused.body)).not.toContain(HF_TOKEN);
        expect((await call("POST", "/api/v1/endpoints", { key, body: engine({ LOG_LEVEL: "debug" }) })).status).toBe(200);
      } finally {
        await api?.close();
      }
    });
  });

  /** Runs one job and waits for its output (the first job of a cold endpoint waits for its worker). */
  async function runToCompletion(ep: string, input: unknown): Promise<any> {
    const r = await stack.call("POST", `/v2/${ep}/run`, { key, body: { input } });
    expect(r.status).toBe(200);
    const done = await waitFor(async () => {
      const s = (await stack.call("GET", `/v2/${ep}/status/${r.body.id}`, { key })).body;
      if (s.status === "FAILED") throw new Error(`job failed: ${JSON.stringify(s.error)}`);
      return s.status === "COMPLETED" ? s : undefined;
    }, 90_000);
    return done.output;
  }
});

/** A name this host resolves to loopback from its hosts file (many map their own name so), if any. */
async function loopbackName(): Promise<string | undefined> {
  for (const name of [hostname(), "vm", "runsc"]) {
    const found = await systemResolveAll(name).catch(() => []);
    if (found.length > 0 && found.every((a) => a.address.startsWith("127."))) return name;
  }
  return undefined;
}
