import { createRequire } from "node:module";
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink } from "node:fs/promises";
import type http from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { freePort } from "../../test/support/services.ts";
import { ConfigError } from "../config/parse-env.ts";
import { randomAlnum } from "../ids/random-id.ts";
import { LocalObjectStore } from "./local-object-store.ts";
import { ObjectKeyError } from "./object-store.ts";
import { createObjectStore } from "./object-store-config.ts";
import { parseOutputBucket } from "./output-bucket.ts";
import { describeObjectStoreConformance } from "./object-store-conformance.ts";
import { S3ObjectStore } from "./s3-object-store.ts";

// s3rver ships no type declarations; this is the part of its API the test uses.
interface S3rverInstance {
  run(): Promise<unknown>;
  close(): Promise<void>;
  httpServer: http.Server;
}
const S3rver = createRequire(import.meta.url)("s3rver") as new (options: Record<string, unknown>) => S3rverInstance;

const BUCKET = "hearth-outputs";
// s3rver's built-in account; any other key is refused by its signature check.
const S3_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

let root: string;
let s3: S3rverInstance;
let s3Endpoint: string;
let client: S3Client;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hearth-object-store-"));
  const port = await freePort();
  s3 = new S3rver({ address: "127.0.0.1", port, silent: true, directory: join(root, "s3rver") });
  await s3.run();
  s3Endpoint = `http://127.0.0.1:${port}`;
  // The settings createObjectStore uses for an endpoint, so the conformance run covers the production client.
  client = new S3Client({ endpoint: s3Endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3_CREDENTIALS });
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
});

afterAll(async () => {
  client?.destroy();
  await s3?.close();
  await rm(root, { recursive: true, force: true });
});

const freshDir = () => mkdtemp(join(root, "local-"));

describeObjectStoreConformance("local directory", async () => new LocalObjectStore(join(await freshDir(), "objects")));
// s3rver writes concurrent PUTs of one key into one file (real S3 replaces objects atomically).
describeObjectStoreConformance("s3 (s3rver)", async () => new S3ObjectStore({ bucket: BUCKET, prefix: `t-${randomAlnum(10)}/`, client }), { atomicConcurrentPuts: false });

describe("LocalObjectStore", () => {
  it("writes dir/<key> as a 0600 file in 0700 directories, leaving no temp file behind", async () => {
    const dir = join(await freshDir(), "objects");
    const store = new LocalObjectStore(dir);
    await store.put("jobs/j1/output.json", Buffer.from("{}"), "application/json");
    await store.put("jobs/j1/output.json", Buffer.from("{\"v\":2}"), "application/json");
    expect(await readFile(join(dir, "jobs/j1/output.json"), "utf8")).toBe("{\"v\":2}");
    expect((await stat(join(dir, "jobs/j1/output.json"))).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir, "jobs/j1"))).mode & 0o777).toBe(0o700);
    expect((await stat(join(dir, "jobs"))).mode & 0o777).toBe(0o700);
    expect(await readdir(join(dir, "jobs/j1"))).toEqual(["output.json"]);
  });

  it("rethrows errors other than a missing object", async () => {
    const dir = await freshDir();
    await symlink("loop", join(dir, "loop"));
    expect((await lstat(join(dir, "loop"))).isSymbolicLink()).toBe(true);
    await expect(new LocalObjectStore(dir).get("loop")).rejects.toMatchObject({ code: "ELOOP" });
  });

  it("writes nothing for a refused key", async () => {
    const dir = await freshDir();
    await mkdir(join(dir, "objects"));
    await expect(new LocalObjectStore(join(dir, "objects")).put("../escaped", Buffer.from("x"), "text/plain")).rejects.toBeInstanceOf(ObjectKeyError);
    expect((await readdir(dir)).sort()).toEqual(["objects"]);
  });
});

describe("S3ObjectStore", () => {
  it("stores under prefix + key with the content type, and reports the key as given", async () => {
    const prefix = `t-${randomAlnum(10)}/nested/`;
    const store = new S3ObjectStore({ bucket: BUCKET, prefix, client });
    const stored = await store.put("jobs/j1/output.json", Buffer.from("{\"a\":1}"), "application/json");
    expect(stored).toMatchObject({ store: "s3", bucket: BUCKET, key: "jobs/j1/output.json", bytes: 7 });
    const raw = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}jobs/j1/output.json` }));
    expect(raw.ContentType).toBe("application/json");
    expect(await raw.Body?.transformToString()).toBe("{\"a\":1}");
  });

  it("works with an empty prefix", async () => {
    const store = new S3ObjectStore({ bucket: BUCKET, prefix: "", client });
    const key = `no-prefix-${randomAlnum(10)}.bin`;
    await store.put(key, Buffer.from([1, 2, 3]), "application/octet-stream");
    const raw = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
    expect(Buffer.from((await raw.Body?.transformToByteArray()) ?? [])).toEqual(Buffer.from([1, 2, 3]));
  });

  it("refuses a key that its prefix pushes past S3's 1024-character limit", async () => {
    const store = new S3ObjectStore({ bucket: BUCKET, prefix: "p/", client });
    await expect(store.put("k".repeat(1023), Buffer.from("x"), "text/plain")).rejects.toBeInstanceOf(ObjectKeyError);
  });

  it("fails, rather than reporting an absent object, when the bucket does not exist", async () => {
    const store = new S3ObjectStore({ bucket: "no-such-bucket", prefix: "", client });
    await expect(store.get("x.json")).rejects.toMatchObject({ name: "NoSuchBucket" });
    await expect(store.put("x.json", Buffer.from("{}"), "application/json")).rejects.toMatchObject({ name: "NoSuchBucket" });
  });
});

describe("createObjectStore", () => {
  it("is a local directory without an output bucket", async () => {
    const dir = join(await freshDir(), "objects");
    const store = createObjectStore({ objectDir: dir, s3Region: "us-east-1" });
    expect(store).toBeInstanceOf(LocalObjectStore);
    await store.put("a/b.json", Buffer.from("{}"), "application/json");
    expect(await readFile(join(dir, "a/b.json"), "utf8")).toBe("{}");
  });

  it("is the output bucket, path-style on the endpoint, with the SDK's credential chain", async () => {
    vi.stubEnv("AWS_ACCESS_KEY_ID", S3_CREDENTIALS.accessKeyId);
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", S3_CREDENTIALS.secretAccessKey);
    try {
      const prefix = `t-${randomAlnum(10)}`;
      const store = createObjectStore({ objectDir: join(root, "unused"), outputBucket: `s3://${BUCKET}/${prefix}`, s3Endpoint, s3Region: "us-east-1" });
      expect(store).toBeInstanceOf(S3ObjectStore);
      const stored = await store.put("out.json", Buffer.from("{}"), "application/json");
      expect(stored).toMatchObject({ store: "s3", bucket: BUCKET, key: "out.json" });
      const raw = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${prefix}/out.json` }));
      expect(await raw.Body?.transformToString()).toBe("{}");
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it("refuses a malformed output bucket", () => {
    expect(() => createObjectStore({ objectDir: root, outputBucket: "bucket/prefix", s3Region: "us-east-1" })).toThrow(ConfigError);
  });
});

describe("parseOutputBucket", () => {
  it.each([
    ["s3://outputs", { bucket: "outputs", prefix: "" }],
    ["s3://outputs/", { bucket: "outputs", prefix: "" }],
    ["s3://outputs/hearth", { bucket: "outputs", prefix: "hearth/" }],
    ["s3://outputs/hearth/", { bucket: "outputs", prefix: "hearth/" }],
    ["s3://my.bucket-1/some/deep/prefix", { bucket: "my.bucket-1", prefix: "some/deep/prefix/" }],
  ])("%s", (text, expected) => {
    expect(parseOutputBucket(text)).toEqual(expected);
  });

  it.each([
    "",
    "outputs",
    "s3:/outputs",
    "s3://",
    "s3:///prefix",
    "https://outputs/prefix",
    "S3://outputs",
    "s3://Outputs",
    "s3://ab",
    "s3://-outputs",
    "s3://outputs:9000/p",
    "s3://user@outputs/p",
    "s3://outputs//",
    "s3://outputs/a//b",
    "s3://outputs/../b",
    "s3://outputs/a/./b",
    "s3://outputs/p?x=1",
    "s3://outputs/p#frag",
    "s3://outputs/with space",
  ])("refuses %j", (text) => {
    expect(() => parseOutputBucket(text)).toThrow(ConfigError);
  });
});
