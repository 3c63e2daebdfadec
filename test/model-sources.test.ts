import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { createRequire } from "node:module";
import { hostname, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { FileModelSource } from "../worker/models/file-model-source.ts";
import { HttpModelSource } from "../worker/models/http-model-source.ts";
import { ModelSourceError, cacheKey } from "../worker/models/model-source.ts";
import { ModelStore } from "../worker/models/model-store.ts";
import { S3ModelSource } from "../worker/models/s3-model-source.ts";
import { modelUrlPolicy } from "../core/engine/model-source-policy.ts";
import { parseAllowList } from "../core/net/url-policy.ts";
import { cacheContents, describeModelSourceConformance, sha256 } from "./model-source-conformance.ts";
import { freePort } from "./support/services.ts";

// s3rver ships no type declarations; this is the part of its API the test uses.
interface S3rverInstance {
  run(): Promise<unknown>;
  close(): Promise<void>;
  httpServer: http.Server;
}
const S3rver = createRequire(import.meta.url)("s3rver") as new (options: Record<string, unknown>) => S3rverInstance;

const BUCKET = "models";
// s3rver's built-in account; any other key is refused by its signature check.
const S3_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };
const hasOpenssl = (() => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let root: string;
let tiny: Buffer;
let dirFiles: Record<string, Buffer>;

let s3: S3rverInstance;
let s3Endpoint: string;
let s3Requests = 0;
let s3Sources: S3ModelSource[] = [];
// s3rver pages V2 listings with DES-encrypted continuation tokens, and OpenSSL 3 (Node 20) keeps DES in
// its legacy provider, which cannot be enabled in a running process: a truncated listing is answered
// 500 in-process. Pagination is therefore tested against the same s3rver, on the same data directory,
// in a child process started with --openssl-legacy-provider.
let pagingS3: ChildProcess | undefined;
let pagingEndpoint = "";

let httpsServer: https.Server | undefined;
let httpsBase = "";
let httpsRequests = 0;
let caPem = "";

let plain: http.Server;
let plainBase: string;
let cutNextDownload = false;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hearth-model-sources-"));
  tiny = await readFile(ensureTinyLlamaFile(join(root, "files", "tiny-llama.gguf")));
  // A checkpoint-shaped directory: nested paths, and more files than one list page (the S3 source pages by 2).
  dirFiles = {
    "config.json": Buffer.from(JSON.stringify({ architectures: ["LlamaForCausalLM"] })),
    "tokenizer/tokenizer.json": Buffer.from('{"model":{"type":"BPE"}}'),
    "tokenizer/special_tokens_map.json": Buffer.from('{"bos_token":"<s>"}'),
    "model-00001-of-00002.safetensors": randomBytes(300_000),
    "model-00002-of-00002.safetensors": tiny,
  };
  for (const [rel, bytes] of Object.entries(dirFiles)) {
    await mkdir(dirname(join(root, "files", "llama-dir", rel)), { recursive: true });
    await writeFile(join(root, "files", "llama-dir", rel), bytes);
  }

  const port = await freePort();
  s3 = new S3rver({ address: "127.0.0.1", port, silent: true, directory: join(root, "s3rver") });
  await s3.run();
  s3.httpServer.on("request", () => s3Requests++);
  s3Endpoint = `http://127.0.0.1:${port}`;
  // WHEN_REQUIRED: newer SDKs otherwise upload with aws-chunked trailing checksums, which s3rver predates.
  const uploader = new S3Client({ endpoint: s3Endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3_CREDENTIALS, requestChecksumCalculation: "WHEN_REQUIRED" });
  await uploader.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await uploader.send(new PutObjectCommand({ Bucket: BUCKET, Key: "tiny/tiny-llama.gguf", Body: tiny }));
  for (const [rel, bytes] of Object.entries(dirFiles)) {
    await uploader.send(new PutObjectCommand({ Bucket: BUCKET, Key: `llama-dir/${rel}`, Body: bytes }));
  }
  uploader.destroy();

  const pagingPort = await freePort();
  const s3rverMain = createRequire(import.meta.url).resolve("s3rver");
  const script = `new (require(${JSON.stringify(s3rverMain)}))({ address: "127.0.0.1", port: ${pagingPort}, silent: true, directory: ${JSON.stringify(join(root, "s3rver"))} }).run().then(() => console.log("ready"))`;
  pagingS3 = spawn(process.execPath, ["--openssl-legacy-provider", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    pagingS3?.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
    pagingS3?.once("exit", (code) => reject(new Error(`s3rver child exited with ${code}`)));
  });
  pagingEndpoint = `http://127.0.0.1:${pagingPort}`;

  plain = http.createServer((req, res) => {
    if (req.url === "/files/tiny-llama.gguf") {
      res.writeHead(200, { "content-length": tiny.length });
      if (!cutNextDownload) return void res.end(tiny);
      cutNextDownload = false;
      // Half the body, then the connection drops: what a crashed proxy or a reset looks like.
      res.write(tiny.subarray(0, tiny.length / 2), () => res.destroy());
      return;
    }
    if (req.url === "/stall") {
      res.writeHead(200, { "content-length": 1000 });
      return void res.write(Buffer.alloc(10));
    }
    if (req.url?.startsWith("/error")) return void res.writeHead(500).end("boom");
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
  plainBase = `http://127.0.0.1:${(plain.address() as { port: number }).port}`;

  if (hasOpenssl) {
    const key = join(root, "key.pem");
    const cert = join(root, "cert.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], { stdio: "ignore" });
    caPem = await readFile(cert, "utf8");
    httpsServer = https.createServer({ key: await readFile(key), cert: caPem }, (req, res) => {
      httpsRequests++;
      if (req.url === "/files/tiny-llama.gguf") return void res.writeHead(200, { "content-length": tiny.length }).end(tiny);
      if (req.url === "/latest") return void res.writeHead(302, { location: "/files/tiny-llama.gguf" }).end();
      if (req.url === "/downgrade") return void res.writeHead(302, { location: `${plainBase}/files/tiny-llama.gguf` }).end();
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => httpsServer?.listen(0, "127.0.0.1", resolve));
    httpsBase = `https://127.0.0.1:${(httpsServer.address() as { port: number }).port}`;
  }
});

afterAll(async () => {
  for (const source of s3Sources) source.close();
  await s3?.close();
  if (pagingS3 && pagingS3.exitCode === null) {
    const exited = new Promise((resolve) => pagingS3?.once("exit", resolve));
    pagingS3.kill("SIGTERM");
    await exited;
  }
  await new Promise((resolve) => plain?.close(resolve));
  await new Promise((resolve) => (httpsServer ? httpsServer.close(resolve) : resolve(undefined)));
  await Promise.all([root, ...scratchDirs].map((dir) => rm(dir, { recursive: true, force: true })));
});

// The servers of this file listen on loopback, which only an allow-list opens (see test/model-source-policy.test.ts for the refusals).
const loopbackPolicy = (() => {
  const r = parseAllowList("127.0.0.1/32");
  if (!r.ok) throw new Error(r.errors.join("; "));
  return modelUrlPolicy(r.allow);
})();
// With credentials of its own (a tenant's), a source may read any bucket those credentials open.
function s3Source(endpoint = s3Endpoint, listPageSize?: number): S3ModelSource {
  const source = new S3ModelSource({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3_CREDENTIALS, listPageSize, buckets: "any" });
  s3Sources.push(source);
  return source;
}
const httpSource = () => new HttpModelSource({ ca: caPem, policy: loopbackPolicy });
const allSources = () => [new FileModelSource({ allowedDirs: [root] }), s3Source(), httpSource()];
const storeIn = (cacheDir: string) => new ModelStore({ cacheDir, sources: allSources() });
const scratchDirs: string[] = [];
const scratch = async () => {
  const dir = await mkdtemp(join(tmpdir(), "hearth-model-cache-"));
  scratchDirs.push(dir);
  return dir;
};

describeModelSourceConformance("file", () => ({
  store: storeIn,
  file: { uri: pathToFileURL(join(root, "files", "tiny-llama.gguf")).href, bytes: tiny },
  // A bare absolute path: the other spelling ModelStore accepts for local models.
  directory: { uri: join(root, "files", "llama-dir"), files: dirFiles },
  missing: pathToFileURL(join(root, "files", "nope.gguf")).href,
  copies: false,
}));

describeModelSourceConformance("s3 (s3rver)", () => ({
  store: storeIn,
  file: { uri: `s3://${BUCKET}/tiny/tiny-llama.gguf`, bytes: tiny },
  directory: { uri: `s3://${BUCKET}/llama-dir/`, files: dirFiles },
  missing: `s3://${BUCKET}/nope/model.gguf`,
  copies: true,
  requests: () => s3Requests,
}));

describe.skipIf(!hasOpenssl)("https (self-signed, trusted through the ca option)", () => {
  describeModelSourceConformance("https", () => ({
    store: storeIn,
    file: { uri: `${httpsBase}/files/tiny-llama.gguf`, bytes: tiny },
    missing: `${httpsBase}/nope.gguf`,
    copies: true,
    requests: () => httpsRequests,
  }));

  it("follows a redirect, and names the file after the URL it was asked for", async () => {
    const path = await storeIn(join(await scratch(), "c")).materialise(`${httpsBase}/latest`);
    expect(path.endsWith("/latest")).toBe(true);
    expect(sha256(await readFile(path))).toBe(sha256(tiny));
  });

  it("refuses a certificate it was not told to trust, and a redirect from https to http", async () => {
    const untrusting = new ModelStore({ cacheDir: join(await scratch(), "c"), sources: [new HttpModelSource({ policy: loopbackPolicy })] });
    await expect(untrusting.materialise(`${httpsBase}/files/tiny-llama.gguf`)).rejects.toMatchObject({ code: "MODEL_FETCH_FAILED" });
    await expect(storeIn(join(await scratch(), "c")).materialise(`${httpsBase}/downgrade`)).rejects.toThrow(/redirects from https to http:/);
  });
});

describe("s3 specifics", () => {
  it("downloads a prefix named without its trailing slash as a directory, paging through the listing", async () => {
    // 5 objects, 2 per page: every file arrives only if the source follows the continuation tokens.
    const store = new ModelStore({ cacheDir: join(await scratch(), "c"), sources: [s3Source(pagingEndpoint, 2)] });
    const path = await store.materialise(`s3://${BUCKET}/llama-dir`);
    expect(path.endsWith("/llama-dir")).toBe(true);
    const found: Record<string, string> = {};
    for (const rel of Object.keys(dirFiles)) found[rel] = sha256(await readFile(join(path, rel)));
    expect(found).toEqual(Object.fromEntries(Object.entries(dirFiles).map(([rel, bytes]) => [rel, sha256(bytes)])));
    expect((await readdir(path, { recursive: true })).length).toBe(Object.keys(dirFiles).length + 1); // + the tokenizer directory
  });

  it("reports a missing bucket as MODEL_NOT_FOUND", async () => {
    const err = await storeIn(join(await scratch(), "c")).materialise("s3://no-such-bucket/x.gguf").catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "MODEL_NOT_FOUND" });
  });
});

describe("http specifics and the store's crash safety", () => {
  it("a connection cut mid-body fails with MODEL_FETCH_FAILED and caches nothing; the next attempt downloads it whole", async () => {
    const cache = join(await scratch(), "c");
    cutNextDownload = true;
    const err = await storeIn(cache).materialise(`${plainBase}/files/tiny-llama.gguf`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "MODEL_FETCH_FAILED" });
    expect(await cacheContents(cache)).toEqual([]);
    const path = await storeIn(cache).materialise(`${plainBase}/files/tiny-llama.gguf`);
    expect((await stat(path)).size).toBe(tiny.length);
  });

  it("names the HTTP status and keeps the query string (a presigned signature) out of the message", async () => {
    const err = await storeIn(join(await scratch(), "c")).materialise(`${plainBase}/error?X-Amz-Signature=s3cr3t`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelSourceError);
    expect((err as ModelSourceError).code).toBe("MODEL_FETCH_FAILED");
    expect((err as Error).message).toMatch(/HTTP 500/);
    expect((err as Error).message).not.toContain("s3cr3t");
  });

  it("an abort stops a stalled download with MODEL_FETCH_ABORTED and leaves nothing behind", async () => {
    const cache = join(await scratch(), "c");
    const ac = new AbortController();
    const pending = storeIn(cache).materialise(`${plainBase}/stall`, ac.signal).catch((e: unknown) => e);
    setTimeout(() => ac.abort(), 200);
    expect(await pending).toMatchObject({ code: "MODEL_FETCH_ABORTED" });
    expect(await cacheContents(cache)).toEqual([]);
  });

  it("gives up on a response that stops sending for idleTimeoutMs, mid-body", async () => {
    const cache = join(await scratch(), "c");
    const store = new ModelStore({ cacheDir: cache, sources: [new HttpModelSource({ idleTimeoutMs: 300, policy: loopbackPolicy })] });
    const started = Date.now();
    const err = await store.materialise(`${plainBase}/stall`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "MODEL_FETCH_FAILED" });
    expect((err as Error).message).toMatch(/no data for 300 ms/);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await cacheContents(cache)).toEqual([]);
  });

  it("removes a partial download left by a dead process on this host, and keeps a live one's", async () => {
    const cache = join(await scratch(), "c");
    const uri = `${plainBase}/files/tiny-llama.gguf`;
    const key = cacheKey(uri);
    const dead = join(cache, "partial", `${key}.partial-${hostname()}-999999999-aaaa`);
    const live = `${key}.partial-${hostname()}-${process.ppid}-bbbb`;
    await mkdir(dead, { recursive: true });
    await mkdir(join(cache, "partial", live), { recursive: true });
    await writeFile(join(dead, "tiny-llama.gguf"), tiny.subarray(0, 1000));
    const path = await storeIn(cache).materialise(uri);
    expect(path).toBe(join(cache, "sha256", sha256(tiny), "tiny-llama.gguf"));
    expect(await cacheContents(cache)).toEqual([`partial/${live}`, `refs/${key}.json`, `sha256/${sha256(tiny)}`]);
  });

  it("downloads again when a cached model's files were deleted behind its back", async () => {
    const cache = join(await scratch(), "c");
    const uri = `${plainBase}/files/tiny-llama.gguf`;
    const path = await storeIn(cache).materialise(uri);
    await rm(path);
    expect(await storeIn(cache).materialise(uri)).toBe(path);
    expect((await stat(path)).size).toBe(tiny.length);
  });

  it("rejects relative paths and schemes it has no source for", async () => {
    const store = storeIn(join(await scratch(), "c"));
    await expect(store.materialise("models/x.gguf")).rejects.toMatchObject({ code: "MODEL_URI_INVALID" });
    await expect(store.materialise("gs://bucket/x.gguf")).rejects.toMatchObject({ code: "MODEL_SCHEME_UNSUPPORTED" });
  });
});
