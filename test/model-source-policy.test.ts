import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ModelCredentials } from "../core/contracts/endpoint-env.ts";
import type { ResolveAll } from "../core/net/host-resolution.ts";
import { parseAllowList } from "../core/net/url-policy.ts";
import { ModelSourceError } from "../worker/models/model-source.ts";
import { ModelStore } from "../worker/models/model-store.ts";
import { createModelSources } from "../worker/models/model-sources.ts";
import { sha256 } from "./model-source-conformance.ts";
import { freePort } from "./support/services.ts";

/**
 * The worker's side of the model trust boundary: what its model sources refuse at download, on what
 * they really open and connect to, whatever the API accepted. Real servers throughout (s3rver, HTTP
 * servers on loopback); only name resolution is given fixed answers, to stand for DNS records that
 * point somewhere else at download than at submission.
 */

interface S3rverInstance {
  run(): Promise<unknown>;
  close(): Promise<void>;
  httpServer: http.Server;
}
const require = createRequire(import.meta.url);
const S3rver = require("s3rver") as new (options: Record<string, unknown>) => S3rverInstance;
// s3rver checks only that a key id exists (it does not verify v4 signatures): register the tenants' keys.
const s3rverAccounts = require("s3rver/lib/models/account") as { DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void } };

const OPERATOR_KEY = { id: "S3RVER", secret: "S3RVER" };
const TENANT: ModelCredentials = { accessId: "TENANTKEY0001", accessSecret: "tenant-secret-0001" };
const OTHER_TENANT: ModelCredentials = { accessId: "TENANTKEY0002", accessSecret: "tenant-secret-0002" };

let root: string;
let modelsDir: string;
let tiny: Buffer;
let s3: S3rverInstance;
let s3Endpoint: string;
/** The access key id of every request s3rver received, in order. */
const s3KeyIds: string[] = [];
let modelServer: http.Server;
let modelPort: number;
/** Stands for something on the worker's network a tenant must not reach (a metadata service, an admin API). */
let internal: http.Server;
let internalPort: number;
let internalRequests = 0;
const savedEnv = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

/** Fixed answers for the names of this file; every other name does not resolve. */
const resolve: ResolveAll = async (host) => {
  const answers: Record<string, string> = { "models.example.test": "127.0.0.1", "rebind.example.test": "127.0.0.1", "s3.tenant.example.test": "127.0.0.1" };
  const address = answers[host];
  if (address === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  return [{ address, family: 4 }];
};

const allow = (text: string) => {
  const r = parseAllowList(text);
  if (!r.ok) throw new Error(r.errors.join("; "));
  return r.allow;
};
const cacheDirs: string[] = [];
async function store(allowList: string, tenantCredentials?: ModelCredentials, cacheDir?: string): Promise<ModelStore> {
  const cache = cacheDir ?? (await mkdtemp(join(tmpdir(), "hearth-policy-cache-")));
  cacheDirs.push(cache);
  const { sources } = createModelSources({
    modelDirs: [modelsDir],
    allow: allow(allowList),
    s3: { endpoint: s3Endpoint, region: "us-east-1", forcePathStyle: true },
    resolve,
    ...(tenantCredentials && { tenantCredentials }),
  });
  return new ModelStore({ cacheDir: cache, sources });
}
const refusal = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ModelSourceError);
  return err as ModelSourceError;
};

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hearth-model-policy-"));
  modelsDir = join(root, "models");
  await mkdir(join(root, "outside"), { recursive: true });
  await mkdir(modelsDir, { recursive: true });
  tiny = Buffer.from("GGUF tiny stand-in model bytes ".repeat(1000));
  await writeFile(join(modelsDir, "tiny.gguf"), tiny);
  await writeFile(join(root, "outside", "secret.gguf"), "not yours");
  await symlink(join(root, "outside", "secret.gguf"), join(modelsDir, "link.gguf"));
  await symlink(join(root, "outside"), join(modelsDir, "dir-link"));

  // The operator's credentials, as the SDK's chain finds them (the scheduler gives them only to workers of allow-listed buckets).
  process.env.AWS_ACCESS_KEY_ID = OPERATOR_KEY.id;
  process.env.AWS_SECRET_ACCESS_KEY = OPERATOR_KEY.secret;
  for (const t of [TENANT, OTHER_TENANT]) s3rverAccounts.DUMMY_ACCOUNT.createKeyPair(t.accessId, t.accessSecret);
  const port = await freePort();
  s3 = new S3rver({ address: "127.0.0.1", port, silent: true, directory: join(root, "s3rver") });
  await s3.run();
  s3.httpServer.on("request", (req: http.IncomingMessage) => {
    const auth = req.headers.authorization ?? "";
    s3KeyIds.push(/Credential=([^/]+)\//.exec(auth)?.[1] ?? "(unsigned)");
  });
  s3Endpoint = `http://127.0.0.1:${port}`;
  const uploader = new S3Client({ endpoint: s3Endpoint, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: OPERATOR_KEY.id, secretAccessKey: OPERATOR_KEY.secret }, requestChecksumCalculation: "WHEN_REQUIRED" });
  for (const bucket of ["operator-models", "tenant-models"]) {
    await uploader.send(new CreateBucketCommand({ Bucket: bucket }));
    await uploader.send(new PutObjectCommand({ Bucket: bucket, Key: "tiny/tiny.gguf", Body: tiny }));
  }
  uploader.destroy();

  internal = http.createServer((_req, res) => {
    internalRequests++;
    res.end("internal secrets");
  });
  await new Promise<void>((r) => internal.listen(0, "127.0.0.1", r));
  internalPort = (internal.address() as { port: number }).port;
  modelServer = http.createServer((req, res) => {
    if (req.url === "/files/tiny.gguf") return void res.writeHead(200, { "content-length": tiny.length }).end(tiny);
    if (req.url === "/to-literal") return void res.writeHead(302, { location: `http://127.0.0.1:${internalPort}/latest/meta-data/` }).end();
    if (req.url === "/to-name") return void res.writeHead(302, { location: `https://rebind.example.test:${internalPort}/latest/meta-data/` }).end();
    if (req.url === "/to-metadata") return void res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end();
    res.writeHead(404).end();
  });
  await new Promise<void>((r) => modelServer.listen(0, "127.0.0.1", r));
  modelPort = (modelServer.address() as { port: number }).port;
});

afterAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = savedEnv.id;
  process.env.AWS_SECRET_ACCESS_KEY = savedEnv.secret;
  if (savedEnv.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
  if (savedEnv.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  await s3?.close();
  await new Promise((r) => modelServer?.close(r));
  await new Promise((r) => internal?.close(r));
  await Promise.all([root, ...cacheDirs].map((d) => rm(d, { recursive: true, force: true })));
});

describe("local files at download", () => {
  it("opens models inside HEARTH_MODEL_DIRS by their real path", async () => {
    const s = await store("");
    expect(await s.materialise(join(modelsDir, "tiny.gguf"))).toBe(join(modelsDir, "tiny.gguf"));
    expect(await s.materialise(pathToFileURL(join(modelsDir, "x", "..", "tiny.gguf")).href)).toBe(join(modelsDir, "tiny.gguf"));
  });

  it("refuses /etc/passwd, `..` out of the directory, and symlinks that lead out", async () => {
    const s = await store("");
    for (const uri of ["/etc/passwd", "file:///etc/passwd", `${modelsDir}/../outside/secret.gguf`, join(modelsDir, "link.gguf"), join(modelsDir, "dir-link", "secret.gguf")]) {
      const err = await refusal(s.materialise(uri));
      expect(err.code, uri).toBe("MODEL_SOURCE_FORBIDDEN");
      expect(err.message).toMatch(/HEARTH_MODEL_DIRS/);
    }
    // Outside answers the same whether the file exists or not: nothing is learnt about the host.
    expect((await refusal(s.materialise("/etc/no-such-file"))).code).toBe("MODEL_SOURCE_FORBIDDEN");
    expect((await refusal(s.materialise(join(modelsDir, "missing.gguf")))).code).toBe("MODEL_NOT_FOUND");
  });
});

describe("http(s) at download", () => {
  it("downloads from an allow-listed loopback server over plain http", async () => {
    const path = await (await store("127.0.0.1/32")).materialise(`http://127.0.0.1:${modelPort}/files/tiny.gguf`);
    expect(sha256(await readFile(path))).toBe(sha256(tiny));
  });

  it("refuses loopback, private and metadata addresses that are not allow-listed, before connecting", async () => {
    const s = await store("");
    for (const uri of [`https://127.0.0.1:${modelPort}/files/tiny.gguf`, `http://127.0.0.1:${modelPort}/files/tiny.gguf`, "https://169.254.169.254/latest/meta-data/", "https://[::ffff:127.0.0.1]/m", "https://10.0.0.1/m", "https://localhost/m"]) {
      expect((await refusal(s.materialise(uri))).code, uri).toBe("MODEL_SOURCE_FORBIDDEN");
    }
  });

  it("refuses a name that resolves to 127.0.0.1 at download, on the address the socket would use", async () => {
    // Public-looking at submission (it did not resolve there); loopback now: DNS rebinding gains nothing.
    const before = internalRequests;
    const err = await refusal((await store("")).materialise(`https://rebind.example.test:${internalPort}/latest/meta-data/`));
    expect(err.code).toBe("MODEL_SOURCE_FORBIDDEN");
    expect(err.message).toMatch(/rebind\.example\.test resolves to 127\.0\.0\.1 is a loopback address/);
    expect(internalRequests).toBe(before);
  });

  it("re-checks every redirect: an allowed server cannot send the download to a forbidden address", async () => {
    // The model server is trusted by name; where it redirects is judged again.
    const s = await store("models.example.test");
    const base = `http://models.example.test:${modelPort}`;
    expect(sha256(await readFile(await s.materialise(`${base}/files/tiny.gguf`)))).toBe(sha256(tiny));
    const before = internalRequests;
    for (const path of ["/to-literal", "/to-name", "/to-metadata"]) {
      const err = await refusal(s.materialise(`${base}${path}`));
      expect(err.code, path).toBe("MODEL_SOURCE_FORBIDDEN");
    }
    expect(internalRequests).toBe(before);
  });
});

describe("s3 at download", () => {
  const keysSince = (mark: number) => [...new Set(s3KeyIds.slice(mark))];

  it("reads an allow-listed bucket with the operator's credentials, and no other bucket", async () => {
    const s = await store("s3://operator-models");
    let mark = s3KeyIds.length;
    expect(sha256(await readFile(await s.materialise("s3://operator-models/tiny/tiny.gguf")))).toBe(sha256(tiny));
    expect(keysSince(mark)).toEqual([OPERATOR_KEY.id]);
    mark = s3KeyIds.length;
    const err = await refusal(s.materialise("s3://tenant-models/tiny/tiny.gguf"));
    expect(err.code).toBe("MODEL_SOURCE_FORBIDDEN");
    expect(s3KeyIds.length).toBe(mark); // refused before any request
  });

  it("reads the tenant's bucket with the tenant's key, never the operator's", async () => {
    const mark = s3KeyIds.length;
    const path = await (await store("", TENANT)).materialise("s3://tenant-models/tiny/tiny.gguf");
    expect(sha256(await readFile(path))).toBe(sha256(tiny));
    expect(keysSince(mark)).toEqual([TENANT.accessId]);
  });

  it("never serves a model cached with one tenant's key to a worker without it", async () => {
    const cache = await mkdtemp(join(tmpdir(), "hearth-policy-shared-cache-"));
    const uri = "s3://tenant-models/tiny/tiny.gguf";
    await (await store("", TENANT, cache)).materialise(uri);
    // No credentials (bucket not allow-listed): refused, though the bytes sit in the cache.
    expect((await refusal((await store("", undefined, cache)).materialise(uri))).code).toBe("MODEL_SOURCE_FORBIDDEN");
    // Another key: its own download, signed with its own key, not the first tenant's cache entry.
    const mark = s3KeyIds.length;
    await (await store("", OTHER_TENANT, cache)).materialise(uri);
    expect(keysSince(mark)).toEqual([OTHER_TENANT.accessId]);
  });

  it("holds the tenant's own S3 endpoint to the same address rules", async () => {
    // Plain http to loopback: only when allow-listed.
    await expect(store("", { ...TENANT, endpointUrl: s3Endpoint })).rejects.toMatchObject({ code: "MODEL_SOURCE_FORBIDDEN" });
    const mark = s3KeyIds.length;
    const viaAllowed = await (await store("127.0.0.1/32", { ...TENANT, endpointUrl: s3Endpoint })).materialise("s3://tenant-models/tiny/tiny.gguf");
    expect(sha256(await readFile(viaAllowed))).toBe(sha256(tiny));
    expect(keysSince(mark)).toEqual([TENANT.accessId]);
    // A name that resolves to loopback when the client connects.
    const before = s3KeyIds.length;
    const port = new URL(s3Endpoint).port;
    const err = await refusal((await store("", { ...TENANT, endpointUrl: `https://s3.tenant.example.test:${port}` })).materialise("s3://tenant-models/tiny/tiny.gguf"));
    expect(err.code).toBe("MODEL_SOURCE_FORBIDDEN");
    expect(s3KeyIds.length).toBe(before);
  });
});
