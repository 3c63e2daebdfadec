import { spawn, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdir, readFile, rm, stat, mkdtemp } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storedEngineSpec } from "../core/contracts/endpoint.ts";
import { parseAllowList } from "../core/net/url-policy.ts";
import { WeightsPreloader } from "../scheduler/weights-preloader.ts";
import { WorkerSecrets } from "../scheduler/worker-secrets.ts";
import { modelUrlPolicy } from "../core/engine/model-source-policy.ts";
import { HttpModelSource } from "../worker/models/http-model-source.ts";
import { ModelStore } from "../worker/models/model-store.ts";
import { S3ModelSource } from "../worker/models/s3-model-source.ts";
import { cacheContents, sha256 } from "./model-source-conformance.ts";
import { S3RVER_CREDENTIALS, startS3, type TestS3 } from "./support/s3rver.ts";
import { waitFor } from "./support/services.ts";

/**
 * The weights cache against s3rver behind a proxy this test controls: it counts requests by
 * method (a cache hit must send none), and can slow bodies down (to overlap two processes, or to
 * SIGKILL one mid-download), cut one ranged body short, or flip a byte of one.
 */
const BUCKET = "weights";
const PART = 256 * 1024;
let s3: TestS3;
let proxy: http.Server;
let endpoint: string;
let root: string;
const requests = { GET: 0, HEAD: 0, other: 0 };
const faults = { delayMs: 0, cutNext: false, corruptNext: false };
const models: Record<string, Buffer> = {};
const sources: S3ModelSource[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hearth-weights-"));
  s3 = await startS3();
  await s3.createBucket(BUCKET);
  const upstream = new URL(s3.endpoint);
  models["big.gguf"] = randomBytes(3 * 1024 * 1024 + 17);
  for (const name of ["a.gguf", "b.gguf", "c.gguf"]) models[name] = randomBytes(100_000);
  for (const [key, body] of Object.entries(models)) await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));

  proxy = http.createServer((req, res) => {
    const method = req.method === "GET" || req.method === "HEAD" ? req.method : "other";
    requests[method]++;
    const ranged = req.method === "GET" && req.headers.range !== undefined;
    const cut = ranged && faults.cutNext;
    const corrupt = ranged && faults.corruptNext;
    if (cut) faults.cutNext = false;
    if (corrupt) faults.corruptNext = false;
    const up = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      let sent = 0;
      ur.on("data", (chunk: Buffer) => {
        if (corrupt && sent === 0) chunk = Buffer.concat([Buffer.from([chunk[0]! ^ 0xff]), chunk.subarray(1)]);
        if (cut && sent + chunk.length > 1000) {
          res.write(chunk.subarray(0, 1000 - sent), () => res.destroy());
          ur.destroy();
          return;
        }
        sent += chunk.length;
        res.write(chunk);
        if (faults.delayMs > 0) {
          ur.pause();
          setTimeout(() => ur.resume(), faults.delayMs);
        }
      });
      ur.on("end", () => res.end());
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
});

afterAll(async () => {
  for (const s of sources) s.close();
  proxy?.closeAllConnections();
  await new Promise((resolve) => proxy?.close(resolve));
  await s3?.close();
  await rm(root, { recursive: true, force: true });
});

let n = 0;
const cacheDir = () => join(root, `cache-${n++}`);
function store(cache: string, budgetBytes?: number, lines?: Record<string, unknown>[], verifyEtag = false): ModelStore {
  const source = new S3ModelSource({ endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3RVER_CREDENTIALS, buckets: "any", partBytes: PART, rangeConcurrency: 4, verifyEtag });
  sources.push(source);
  return new ModelStore({ cacheDir: cache, sources: [source], ...(budgetBytes !== undefined && { budgetBytes }), ...(lines && { log: (e) => lines.push(e), progressIntervalMs: 0 }) });
}
const snapshot = () => ({ ...requests });
const sent = (before: typeof requests) => ({ GET: requests.GET - before.GET, HEAD: requests.HEAD - before.HEAD, other: requests.other - before.other });
const parts = (bytes: number) => Math.ceil(bytes / PART);

function child(cache: string, uri: string): { proc: ChildProcess; lines: Record<string, unknown>[]; done: Promise<Record<string, unknown>> } {
  const proc = spawn(process.execPath, ["--import", "tsx", join(import.meta.dirname, "support", "weights-child.ts"), cache, endpoint, uri], { stdio: ["ignore", "pipe", "inherit"] });
  const lines: Record<string, unknown>[] = [];
  let buffered = "";
  const done = new Promise<Record<string, unknown>>((resolve, reject) => {
    proc.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let i = buffered.indexOf("\n"); i >= 0; i = buffered.indexOf("\n")) {
        const line = JSON.parse(buffered.slice(0, i)) as Record<string, unknown>;
        buffered = buffered.slice(i + 1);
        lines.push(line);
        if (line.msg === "materialised" || line.msg === "failed") resolve(line);
      }
    });
    proc.once("exit", (code, signal) => reject(new Error(`child exited (${code ?? signal}) before materialising`)));
  });
  return { proc, lines, done };
}

describe("weights cache (s3rver)", () => {
  it("pulls a model once in parallel ranges, verified, then serves it from the cache with no S3 request at all", async () => {
    const cache = cacheDir();
    const big = models["big.gguf"]!;
    const lines: Record<string, unknown>[] = [];
    let before = snapshot();
    const first = await store(cache, undefined, lines).materialise(`s3://${BUCKET}/big.gguf`);
    expect(sent(before)).toEqual({ GET: parts(big.length), HEAD: 1, other: 0 });
    expect(first).toBe(join(cache, "sha256", sha256(big), "big.gguf"));
    expect(sha256(await readFile(first))).toBe(sha256(big));
    // Progress in the log: bytes and a rate, and the digest at the end.
    expect(lines.some((l) => l.msg === "model download progress" && typeof l.bytesPerSecond === "number" && (l.bytes as number) > 0)).toBe(true);
    expect(lines.find((l) => l.msg === "model downloaded")).toMatchObject({ bytes: big.length, totalBytes: big.length, sha256: sha256(big) });

    // The second start: a new store (a new worker process) on the same cache.
    before = snapshot();
    expect(await store(cache).materialise(`s3://${BUCKET}/big.gguf`)).toBe(first);
    expect(sent(before)).toEqual({ GET: 0, HEAD: 0, other: 0 });
  });

  it("checks a #sha256= fragment: a wrong digest fails and the file never becomes visible; the right one is served", async () => {
    const cache = cacheDir();
    const a = models["a.gguf"]!;
    const wrong = createHash("sha256").update("not it").digest("hex");
    const err = await store(cache).materialise(`s3://${BUCKET}/a.gguf#sha256=${wrong}`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "MODEL_CHECKSUM_MISMATCH" });
    expect((err as Error).message).toContain(wrong);
    expect(await cacheContents(cache)).toEqual([]);
    await expect(store(cache).materialise(`s3://${BUCKET}/a.gguf#sha256=nothex`)).rejects.toMatchObject({ code: "MODEL_URI_INVALID" });
    const path = await store(cache).materialise(`s3://${BUCKET}/a.gguf#sha256=${sha256(a).toUpperCase()}`);
    expect(sha256(await readFile(path))).toBe(sha256(a));
  });

  it("with verifyEtag (HEARTH_MODEL_VERIFY_ETAG), a body altered in transit fails the ETag (MD5) check and is never visible", async () => {
    const cache = cacheDir();
    faults.corruptNext = true;
    const err = await store(cache, undefined, undefined, true).materialise(`s3://${BUCKET}/big.gguf`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "MODEL_CHECKSUM_MISMATCH" });
    expect((err as Error).message).toMatch(/ETag/);
    expect(await cacheContents(cache)).toEqual([]);
  });

  it("a ranged body cut short fails the download, leaves nothing, and the next attempt gets it whole", async () => {
    const cache = cacheDir();
    faults.cutNext = true;
    const err = await store(cache).materialise(`s3://${BUCKET}/big.gguf`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "MODEL_FETCH_FAILED" });
    expect(await cacheContents(cache)).toEqual([]);
    const path = await store(cache).materialise(`s3://${BUCKET}/big.gguf`);
    expect(sha256(await readFile(path))).toBe(sha256(models["big.gguf"]!));
  });

  it("two processes wanting one model at once download it once (a host-wide lock), and get the same file", async () => {
    const cache = cacheDir();
    faults.delayMs = 20; // long enough for the second process to arrive while the first downloads
    const before = snapshot();
    try {
      const [one, two] = [child(cache, `s3://${BUCKET}/big.gguf`), child(cache, `s3://${BUCKET}/big.gguf`)];
      const [a, b] = await Promise.all([one.done, two.done]);
      expect(a).toMatchObject({ msg: "materialised" });
      expect(b).toMatchObject({ msg: "materialised", path: a.path });
      expect(sent(before)).toEqual({ GET: parts(models["big.gguf"]!.length), HEAD: 1, other: 0 });
      const downloaded = [one, two].filter((c) => c.lines.some((l) => l.msg === "model downloaded"));
      expect(downloaded).toHaveLength(1);
      // The other one waited for it rather than finding it done (else this test proves nothing).
      expect([one, two].filter((c) => c.lines.some((l) => l.msg === "model download waits for another process"))).toHaveLength(1);
    } finally {
      faults.delayMs = 0;
    }
  });

  it("a downloader SIGKILLed mid-download: the next one takes over its lock, never serves its partial file, and downloads it whole", async () => {
    const cache = cacheDir();
    faults.delayMs = 50;
    const killed = child(cache, `s3://${BUCKET}/big.gguf`);
    killed.done.catch(() => undefined); // it is killed before it finishes
    try {
      await waitFor(() => killed.lines.find((l) => l.msg === "model download progress" && (l.bytes as number) > 0), 30_000);
      const exited = new Promise((resolve) => killed.proc.once("exit", resolve));
      killed.proc.kill("SIGKILL");
      await exited;
    } finally {
      faults.delayMs = 0;
    }
    const [partial] = await readdir(join(cache, "partial"));
    expect(partial).toContain(`-${killed.proc.pid}-`);
    expect((await readdir(join(cache, "locks"))).filter((f) => f.endsWith(".lock"))).toHaveLength(1); // the dead holder's lock is still there
    const path = await store(cache).materialise(`s3://${BUCKET}/big.gguf`);
    expect(sha256(await readFile(path))).toBe(sha256(models["big.gguf"]!));
    expect(await cacheContents(cache)).toEqual([expect.stringMatching(/^refs\//), `sha256/${sha256(models["big.gguf"]!)}`]);
    expect((await readdir(join(cache, "locks"))).filter((f) => f.endsWith(".lock"))).toEqual([]);
  });

  it("evicts the least recently used model under HEARTH_MODEL_CACHE_BYTES, never one a live process holds", async () => {
    const cache = cacheDir();
    const size = models["a.gguf"]!.length;
    const budget = 2 * size + size / 2; // room for two models
    const pull = async (name: string) => {
      const s = store(cache, budget);
      const path = await s.materialise(`s3://${BUCKET}/${name}`);
      await s.close(); // this "worker" is gone: its lease with it
      return path;
    };
    const entries = async () => (await cacheContents(cache)).filter((p) => p.startsWith("sha256/")).map((p) => p.slice(7)).sort();
    const digest = (name: string) => sha256(models[name]!);
    await pull("a.gguf");
    await new Promise((r) => setTimeout(r, 20)); // mtimes apart
    await pull("b.gguf");
    await new Promise((r) => setTimeout(r, 20));
    const before = snapshot();
    await pull("a.gguf"); // a hit: a is now the more recently used
    expect(sent(before)).toEqual({ GET: 0, HEAD: 0, other: 0 });
    await new Promise((r) => setTimeout(r, 20));
    await pull("c.gguf");
    expect(await entries()).toEqual([digest("a.gguf"), digest("c.gguf")].sort());

    // A running worker holds b: pulling a again (evicting the LRU) must take c, not b, though b is older.
    const holder = store(cache, budget);
    await holder.materialise(`s3://${BUCKET}/b.gguf`); // downloads b: evicts a (the LRU, unheld)
    expect(await entries()).toEqual([digest("b.gguf"), digest("c.gguf")].sort());
    await new Promise((r) => setTimeout(r, 20));
    await pull("a.gguf");
    expect(await entries()).toEqual([digest("a.gguf"), digest("b.gguf")].sort());
    expect((await stat(join(cache, "sha256", digest("b.gguf"), "b.gguf"))).size).toBe(size);
    await holder.close();
  });

  it("a model larger than the budget fails clearly before any byte is downloaded, and a budget full of held models too", async () => {
    const cache = cacheDir();
    const before = snapshot();
    const err = await store(cache, 1000).materialise(`s3://${BUCKET}/big.gguf`).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "MODEL_CACHE_TOO_SMALL" });
    expect((err as Error).message).toMatch(/HEARTH_MODEL_CACHE_BYTES is 1000/);
    expect(sent(before)).toEqual({ GET: 0, HEAD: 1, other: 0 });
    expect(await cacheContents(cache)).toEqual([]);

    const size = models["a.gguf"]!.length;
    const holder = store(cache, size + 10);
    await holder.materialise(`s3://${BUCKET}/a.gguf`);
    const full = await store(cache, size + 10).materialise(`s3://${BUCKET}/b.gguf`).catch((e: unknown) => e);
    expect(full).toMatchObject({ code: "MODEL_CACHE_TOO_SMALL" });
    expect((full as Error).message).toMatch(/running workers hold/);
    await holder.close();
  });
});

describe("preload (the scheduler's hook)", () => {
  it("runs the built preloader with a worker's environment: the model lands in the cache, and the worker's start then sends no S3 request", async () => {
    const cache = cacheDir();
    const allow = parseAllowList(`s3://${BUCKET}`);
    if (!allow.ok) throw new Error(allow.errors.join("; "));
    const lines: Record<string, unknown>[] = [];
    const preloader = new WeightsPreloader({
      inheritEnv: { PATH: process.env.PATH ?? "", HEARTH_MODEL_CACHE_DIR: cache, HEARTH_S3_ENDPOINT: endpoint },
      workerEnv: { HEARTH_MODEL_ALLOWLIST: `s3://${BUCKET}` },
      // The operator's credentials, handed to this endpoint's processes because its bucket is allow-listed.
      secrets: new WorkerSecrets({ modelAllowList: allow.allow, operatorS3Env: { AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey } }),
      log: (e) => lines.push(e),
    });
    const engine = storedEngineSpec.parse({ kind: "openai", profile: "embedded", model: `s3://${BUCKET}/c.gguf` });
    const endpoint_ = { id: "ep-preload", tenantId: "t", gpuTypeIds: [], engine, executionTimeoutMs: 60_000, scaling: {} } as unknown as Parameters<WeightsPreloader["preload"]>[0];
    const before = snapshot();
    preloader.preload(endpoint_);
    preloader.preload(endpoint_); // one at a time per endpoint: the second call is a no-op
    const end = await waitFor(() => lines.find((l) => l.msg === "preload finished" || l.msg === "preload failed"), 60_000);
    expect(end).toMatchObject({ msg: "preload finished", code: 0 });
    expect(lines.filter((l) => l.msg === "preload started")).toHaveLength(1);
    expect(sent(before).GET).toBe(1);

    const mark = snapshot();
    const path = await store(cache).materialise(`s3://${BUCKET}/c.gguf`);
    expect(sha256(await readFile(path))).toBe(sha256(models["c.gguf"]!));
    expect(sent(mark)).toEqual({ GET: 0, HEAD: 0, other: 0 });
  });

  it("skips handler endpoints and reports a model it cannot fetch as a failed preload", async () => {
    const lines: Record<string, unknown>[] = [];
    const preloader = new WeightsPreloader({ inheritEnv: { PATH: process.env.PATH ?? "", HEARTH_MODEL_CACHE_DIR: cacheDir() }, log: (e) => lines.push(e) });
    const handler = { id: "ep-h", engine: storedEngineSpec.parse({ kind: "handler", module: "/x.mjs" }) } as unknown as Parameters<WeightsPreloader["preload"]>[0];
    preloader.preload(handler);
    expect(lines).toEqual([]);
    // No allow-list: the operator's bucket is refused, as it would be for a worker.
    const refused = { id: "ep-r", engine: storedEngineSpec.parse({ kind: "openai", profile: "embedded", model: `s3://${BUCKET}/c.gguf` }) } as unknown as Parameters<WeightsPreloader["preload"]>[0];
    preloader.preload(refused);
    expect(await waitFor(() => lines.find((l) => l.msg === "preload finished" || l.msg === "preload failed"), 60_000)).toMatchObject({ msg: "preload failed", code: 1 });
  });

  it("runs at most maxConcurrent preloads at once; the others wait their turn and run", async () => {
    const lines: Record<string, unknown>[] = [];
    const preloader = new WeightsPreloader({ inheritEnv: { PATH: process.env.PATH ?? "", HEARTH_MODEL_CACHE_DIR: cacheDir() }, maxConcurrent: 1, log: (e) => lines.push(e) });
    const engine = storedEngineSpec.parse({ kind: "openai", profile: "embedded", model: `s3://${BUCKET}/c.gguf` });
    for (const id of ["ep-1", "ep-2", "ep-3"]) preloader.preload({ id, engine } as unknown as Parameters<WeightsPreloader["preload"]>[0]);
    expect(lines.filter((l) => l.msg === "preload started").map((l) => l.endpointId)).toEqual(["ep-1"]);
    await waitFor(() => lines.filter((l) => l.msg === "preload failed").length === 3 || undefined, 60_000);
    const order = lines.filter((l) => l.msg === "preload started" || l.msg === "preload failed").map((l) => `${l.msg as string} ${l.endpointId as string}`);
    expect(order).toEqual(["preload started ep-1", "preload failed ep-1", "preload started ep-2", "preload failed ep-2", "preload started ep-3", "preload failed ep-3"]);
  });
});

describe("https/http sources with Range", () => {
  let server: http.Server;
  let base: string;
  const seen: { range: string | undefined; ifMatch: string | undefined }[] = [];
  let lieAboutRange = false;

  beforeAll(async () => {
    const big = models["big.gguf"]!;
    const etag = `"${sha256(big).slice(0, 16)}"`;
    server = http.createServer((req, res) => {
      seen.push({ range: req.headers.range, ifMatch: req.headers["if-match"] });
      if (req.url === "/latest") return void res.writeHead(302, { location: "/big.gguf" }).end();
      const ranged = req.url === "/big.gguf";
      if (!ranged && req.url !== "/plain.gguf") return void res.writeHead(404).end();
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      if (!ranged || m === null) return void res.writeHead(200, { "content-length": big.length }).end(big);
      const start = Number(m[1]);
      const end = Math.min(Number(m[2]), big.length - 1);
      const claimed = lieAboutRange && start > 0 ? `bytes ${start + 1}-${end}/${big.length}` : `bytes ${start}-${end}/${big.length}`;
      res.writeHead(206, { "content-range": claimed, "content-length": end - start + 1, etag }).end(big.subarray(start, end + 1));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => new Promise((resolve) => server?.close(resolve)));

  const allow = parseAllowList("127.0.0.1/32");
  if (!allow.ok) throw new Error(allow.errors.join("; "));
  const httpStore = (cache: string) => new ModelStore({ cacheDir: cache, sources: [new HttpModelSource({ policy: modelUrlPolicy(allow.allow), partBytes: PART, rangeConcurrency: 4 })] });

  it("reads a server that supports ranges in parallel parts (after a redirect), verified, then from the cache with no request", async () => {
    const cache = cacheDir();
    const big = models["big.gguf"]!;
    seen.length = 0;
    const path = await httpStore(cache).materialise(`${base}/latest#sha256=${sha256(big)}`);
    expect(sha256(await readFile(path))).toBe(sha256(big));
    const parts = seen.filter((r) => r.range !== undefined);
    expect(parts).toHaveLength(Math.ceil(big.length / PART) + 1); // the redirect was asked for the first range too
    expect(parts.slice(2).every((r) => r.ifMatch !== undefined)).toBe(true);
    seen.length = 0;
    expect(await httpStore(cache).materialise(`${base}/latest#sha256=${sha256(big)}`)).toBe(path);
    expect(seen).toEqual([]);
  });

  it("streams the whole body from a server that ignores ranges", async () => {
    seen.length = 0;
    const path = await httpStore(cacheDir()).materialise(`${base}/plain.gguf`);
    expect(sha256(await readFile(path))).toBe(sha256(models["big.gguf"]!));
    expect(seen).toHaveLength(1);
  });

  it("fails, leaving nothing, when a part comes back for another range than asked", async () => {
    const cache = cacheDir();
    lieAboutRange = true;
    try {
      const err = await httpStore(cache).materialise(`${base}/big.gguf`).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "MODEL_FETCH_FAILED" });
      expect((err as Error).message).toMatch(/asked for bytes/);
      expect(await cacheContents(cache)).toEqual([]);
    } finally {
      lieAboutRange = false;
    }
  });
});
