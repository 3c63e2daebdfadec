import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { Header } from "tar";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { archiveKey, manifestKey, snapshotFolder, type SnapshotParts } from "../core/weights/engine-cache-key.ts";
import { resolveEngineUser } from "../worker/engines/openai/engine-user.ts";
import { OffloadClient } from "../worker/runtime/offload-client.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { restoreGrant } from "../core/contracts/engine-cache.ts";
import { writeFakeEngine } from "./support/fake-engine.ts";
import { fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { startS3, type TestS3 } from "./support/s3rver.ts";
import { waitFor } from "./support/services.ts";

/**
 * Engine cache snapshots end to end (issue 10, "engine cache archived and restored"): the whole
 * stack, real worker processes, the control plane's broker on s3rver. The engine is a stand-in for
 * `vllm serve` (test/support/fake-engine.ts): vLLM cannot run on these machines, so its real
 * compile caches are never produced here. The profile's declared directory is pointed at a
 * directory of the test's with VLLM_CACHE_ROOT (the variable vLLM honours), in the endpoint's
 * `engine.env`, and holds files the test writes.
 */
const BUCKET = "engine-cache";
const PREFIX = "snaps/";
const engineUser = process.getuid?.() === 0 ? resolveEngineUser("nobody") : undefined;

interface WorkerLine {
  workerId: string;
  endpointId: string;
  entry: Record<string, any>;
}

let s3: TestS3;
let s3Closed = false;
let stack: Stack;
let root: string;
let modelPath: string;
const lines: WorkerLine[] = [];

const engine = (cacheDir: string) => ({ kind: "openai", profile: "vllm", model: modelPath, concurrency: 1, startupTimeoutMs: 60_000, env: { VLLM_CACHE_ROOT: cacheDir } });

/** A directory the engine's user owns (an engine's cache directory), holding `files`. */
async function cacheDir(name: string, files: Record<string, Buffer> = {}): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  for (const [rel, bytes] of Object.entries(files)) {
    await mkdir(join(dir, rel, ".."), { recursive: true });
    await writeFile(join(dir, rel), bytes);
  }
  if (engineUser) execFileSync("chown", ["-R", `${engineUser.uid}:${engineUser.gid}`, dir]);
  return dir;
}

async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const st = await lstat(join(dir, name));
    out[name] = st.isFile() ? createHash("sha256").update(await readFile(join(dir, name))).digest("hex") : "<dir>";
  }
  return out;
}

/** The first line of `msg` a worker of `endpointId` wrote (optionally: of one worker), once it has. */
function line(endpointId: string, msg: string, workerId?: string, timeoutMs = 60_000): Promise<WorkerLine> {
  return waitFor(() => lines.find((l) => l.endpointId === endpointId && l.entry.msg === msg && (workerId === undefined || l.workerId === workerId)), timeoutMs, 100);
}
/** The stand-in engine's start line: how many files its cache directory held when it started. */
function engineStart(endpointId: string, workerId: string): Promise<WorkerLine> {
  return waitFor(() => lines.find((l) => l.workerId === workerId && l.endpointId === endpointId && l.entry.msg === "engine output" && l.entry.engine?.msg === "fake engine start"), 60_000, 100);
}

async function objectsUnder(prefix: string): Promise<string[]> {
  const res = await s3.client().send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (res.Contents ?? []).map((o) => o.Key!).sort();
}
async function manifestAt(folder: string): Promise<Record<string, any>> {
  const res = await s3.client().send(new GetObjectCommand({ Bucket: BUCKET, Key: manifestKey(folder) }));
  return JSON.parse(await res.Body!.transformToString());
}

/** The snapshot folder a worker of this tenant computes for the test's model (image `local`, GPU type `cpu`, a local model named by path, size and mtime). */
async function folderOf(tenantId: string): Promise<string> {
  const real = await realpath(modelPath);
  const st = await stat(real);
  const parts: SnapshotParts = { image: "local", gpuType: "cpu", profile: "vllm", model: `file:${createHash("sha256").update(JSON.stringify([real, st.size, st.mtimeMs])).digest("hex")}` };
  return PREFIX + snapshotFolder(tenantId, parts);
}

async function sessions(key: string, ep: string): Promise<Record<string, any>[]> {
  return (await stack.call("GET", `/api/v1/endpoints/${ep}/workers`, { key })).body.items as Record<string, any>[];
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hearth-engine-cache-test-"));
  await chmod(root, 0o755);
  s3 = await startS3();
  await s3.createBucket(BUCKET);
  const bin = join(root, "bin");
  await writeFakeEngine(bin);
  modelPath = join(root, "model.safetensors");
  await writeFile(modelPath, randomBytes(4096));
  await chmod(modelPath, 0o644);
  stack = await startStack({
    engineCacheBucket: { bucket: BUCKET, prefix: PREFIX, client: s3.client() },
    workerInheritEnv: { ...process.env, PATH: `${bin}:${process.env.PATH}`, HEARTH_ENGINE_CACHE_BUCKET: `s3://${BUCKET}/snaps` },
    workerOutput: (worker, _stream, text) => {
      if (!text.startsWith("{")) return;
      try {
        lines.push({ ...worker, entry: JSON.parse(text) });
      } catch {
        // not a log line
      }
    },
  });
}, 120_000);

afterAll(async () => {
  await stack?.close();
  if (!s3Closed) await s3?.close();
  await rm(root, { recursive: true, force: true });
});

describe("engine cache snapshots", () => {
  const compiled = { "torch_compile_cache/1517964802/rank_0_0/backbone/model.so": randomBytes(300_000), "modelinfos/model.json": Buffer.from('{"arch":"x"}') };
  let tenantA: { id: string; key: string };
  let original: Record<string, string>;

  it("archives the declared directory after the worker's first healthy boot, and restores it byte for byte before the next engine starts", async () => {
    tenantA = await stack.tenantWithId("cache-a");
    const dir = await cacheDir("a-vllm", compiled);
    original = await tree(dir);
    const ep = await stack.endpoint(tenantA.key, { engine: engine(dir), workersMin: 1, workersMax: 1, idleTimeout: 1 });

    const miss = await line(ep, "engine cache miss");
    const archived = await line(ep, "engine cache archived", miss.workerId);
    expect(archived.entry).toMatchObject({ files: 2, dirs: ["vllm"] });
    const folder = await folderOf(tenantA.id);
    expect(folder.startsWith(`${PREFIX}engine-cache/v1/${tenantA.id}/vllm/`)).toBe(true);
    expect(await objectsUnder(folder)).toEqual([archiveKey(folder, archived.entry.sha256), manifestKey(folder)].sort());
    expect(await manifestAt(folder)).toMatchObject({ format: "hearth-engine-cache/1", sha256: archived.entry.sha256, bytes: archived.entry.bytes, dirs: ["vllm"] });

    // Down to no worker; the directory emptied (a new host, a new HOME); up again.
    expect((await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key: tenantA.key, body: { workersMin: 0 } })).status).toBe(200);
    await waitFor(async () => (await sessions(tenantA.key, ep)).find((s) => s.id === miss.workerId)?.endedAt, 60_000, 200);
    for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true });
    expect((await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key: tenantA.key, body: { workersMin: 1 } })).status).toBe(200);

    const restored = await line(ep, "engine cache restored");
    expect(restored.workerId).not.toBe(miss.workerId);
    expect(restored.entry).toMatchObject({ sha256: archived.entry.sha256, files: 2, restored: ["vllm"], kept: [] });
    // Before the engine started: it found the files there.
    expect((await engineStart(ep, restored.workerId)).entry.engine.cacheFiles).toBe(2);
    expect(await tree(dir)).toEqual(original);
    if (engineUser) expect((await stat(join(dir, "modelinfos/model.json"))).uid).toBe(engineUser.uid);
    // Nothing archived again: the snapshot is there.
    expect(await objectsUnder(folder)).toHaveLength(2);

    // The cold-start report says which start had its cache.
    const both = await waitFor(async () => {
      const s = await sessions(tenantA.key, ep);
      const first = s.find((x) => x.id === miss.workerId);
      const second = s.find((x) => x.id === restored.workerId);
      return first?.coldStart?.engineCacheHit !== undefined && second?.coldStart?.engineCacheHit !== undefined ? { first, second } : undefined;
    }, 30_000, 200);
    expect(both.first.coldStart).toMatchObject({ engineCacheHit: false });
    expect(both.second.coldStart).toMatchObject({ engineCacheHit: true });
    expect(Number.isInteger(both.second.coldStart.engineCacheRestoreMs)).toBe(true);
    await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key: tenantA.key, body: { workersMin: 0 } });
  }, 180_000);

  it("never restores one tenant's snapshot into another tenant's worker, even for the same image, GPU type, profile and model", async () => {
    const tenantB = await stack.tenantWithId("cache-b");
    const dir = await cacheDir("b-vllm");
    const ep = await stack.endpoint(tenantB.key, { engine: engine(dir), workersMin: 1, workersMax: 1 });
    const miss = await line(ep, "engine cache miss");
    expect((await engineStart(ep, miss.workerId)).entry.engine.cacheFiles).toBe(0);
    await line(ep, "engine cache not archived: the cache directories hold no files", miss.workerId);
    expect(await readdir(dir)).toEqual([]);
    // Tenant A's snapshot for the same parts is still there; B's folder is its own and empty.
    expect(await objectsUnder(await folderOf(tenantA.id))).toHaveLength(2);
    expect(await objectsUnder(await folderOf(tenantB.id))).toEqual([]);
    expect(lines.some((l) => l.endpointId === ep && l.entry.msg === "engine cache restored")).toBe(false);
    await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key: tenantB.key, body: { workersMin: 0 } });
  }, 120_000);

  it("refuses a hostile snapshot (a link out of the directory, a file through it, an absolute path) without writing outside or leaving anything, boots, and replaces it", async () => {
    const tenantC = await stack.tenantWithId("cache-c");
    const outside = join(root, `outside-${randomBytes(4).toString("hex")}`);
    await mkdir(outside, { recursive: true });
    await chmod(outside, 0o777); // writable by the engine's user too: only the refusal keeps the file out
    const absolute = join(root, `absolute-${randomBytes(4).toString("hex")}.txt`);
    const blocks: Buffer[] = [];
    for (const e of [
      { path: "vllm/innocent.txt", type: "File", body: Buffer.from("fine") },
      { path: "vllm/link", type: "SymbolicLink", linkpath: outside },
      { path: "vllm/link/pwned.txt", type: "File", body: Buffer.from("pwned") },
      { path: absolute, type: "File", body: Buffer.from("pwned") },
    ]) {
      const body = e.body ?? Buffer.alloc(0);
      const h = new Header({ path: e.path, type: e.type as "File", size: body.length, mode: 0o644, mtime: new Date(), ...(e.linkpath && { linkpath: e.linkpath }) });
      h.encode();
      blocks.push(h.block!, body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
    blocks.push(Buffer.alloc(1024));
    const hostile = gzipSync(Buffer.concat(blocks));
    const sha256 = createHash("sha256").update(hostile).digest("hex");
    const folder = await folderOf(tenantC.id);
    await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: archiveKey(folder, sha256), Body: hostile }));
    await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: manifestKey(folder), Body: JSON.stringify({ format: "hearth-engine-cache/1", sha256, bytes: hostile.length, createdAt: new Date().toISOString(), dirs: ["vllm"] }) }));

    const dir = await cacheDir("c-vllm");
    const ep = await stack.endpoint(tenantC.key, { engine: engine(dir), workersMin: 1, workersMax: 1 });
    const refused = await line(ep, "engine cache snapshot refused");
    expect(refused.entry).toMatchObject({ level: "warn", sha256, code: "ENGINE_CACHE_REFUSED" });
    expect(refused.entry.error).toMatch(/SymbolicLink/);
    // The worker is up all the same; nothing was written outside, and the innocent entry before the bad ones was removed.
    await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key: tenantC.key })).body.workers.idle === 1, 60_000, 200);
    expect(await readdir(outside)).toEqual([]);
    expect(existsSync(absolute)).toBe(false);
    expect(await readdir(dir)).toEqual([]);
    expect(lines.some((l) => l.endpointId === ep && l.entry.msg === "engine cache restored")).toBe(false);
    await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key: tenantC.key, body: { workersMin: 0 } });
    await waitFor(async () => (await sessions(tenantC.key, ep)).find((s) => s.id === refused.workerId)?.endedAt, 60_000, 200);

    // The next worker, with files in its directory, replaces exactly the refused snapshot with its own.
    await writeFile(join(dir, "kernel.bin"), randomBytes(1000));
    if (engineUser) await chown(join(dir, "kernel.bin"), engineUser.uid, engineUser.gid);
    await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key: tenantC.key, body: { workersMin: 1 } });
    const archived = await waitFor(() => lines.find((l) => l.endpointId === ep && l.entry.msg === "engine cache archived"), 60_000, 100);
    expect((await manifestAt(folder)).sha256).toBe(archived.entry.sha256);
    expect(archived.entry.sha256).not.toBe(sha256);
    await stack.call("PATCH", `/api/v1/endpoints/${ep}`, { key: tenantC.key, body: { workersMin: 0 } });
  }, 180_000);

  it("the broker answers only a live openai endpoint, for the profile it runs", async () => {
    const ask = (endpointId: string, profile: SnapshotParts["profile"]) =>
      new OffloadClient({ redis: stack.redis, keys: new RedisKeys(stack.redisPrefix), endpointId, timeoutMs: 5000 }).ask(
        { kind: "engine-cache-restore", snapshot: { image: "local", gpuType: "cpu", profile, model: `sha256:${"a".repeat(64)}` } },
        restoreGrant,
      );
    const vllmEp = await stack.endpoint(tenantA.key, { engine: engine(join(root, "e-vllm")) });
    expect(await ask(vllmEp, "vllm")).toEqual({ snapshot: null });
    await expect(ask(vllmEp, "sglang")).rejects.toThrow(/runs the vllm profile, not sglang/);
    const handlerEp = await stack.endpoint(tenantA.key, { engine: { kind: "handler", module: join(fixturesDir, "env-echo.mjs") } });
    await expect(ask(handlerEp, "vllm")).rejects.toThrow(/not a live openai endpoint/);
    await expect(ask("no-such-endpoint", "vllm")).rejects.toThrow(/not a live openai endpoint/);
  });

  it("boots a worker without its cache when S3 is away, saying why", async () => {
    await s3.close();
    s3Closed = true;
    const dir = await cacheDir("d-vllm", compiled);
    const ep = await stack.endpoint(tenantA.key, { engine: engine(dir), workersMin: 1, workersMax: 1 });
    const failed = await line(ep, "engine cache restore failed");
    expect(failed.entry.level).toBe("warn");
    await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key: tenantA.key })).body.workers.idle === 1, 60_000, 200);
    expect((await engineStart(ep, failed.workerId)).entry.engine.cacheFiles).toBe(2);
    // Nothing archived either: with S3 away, the attempt would only cost the host an archive.
    expect(lines.some((l) => l.endpointId === ep && /archive/.test(l.entry.msg))).toBe(false);
  }, 120_000);
});
