import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { freePort } from "./services.ts";

// s3rver ships no type declarations; this is the part of its API the tests use.
interface S3rverInstance {
  run(): Promise<unknown>;
  close(): Promise<void>;
}
const require = createRequire(import.meta.url);
const S3rver = require("s3rver") as new (options: Record<string, unknown>) => S3rverInstance;
const account = require("s3rver/lib/models/account") as { DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void } };

/** s3rver's built-in account. */
export const S3RVER_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface TestS3 {
  endpoint: string;
  /** A client on `credentials` (default s3rver's own). */
  client(credentials?: { accessKeyId: string; secretAccessKey: string }): S3Client;
  createBucket(name: string): Promise<void>;
  /** Adds a key pair s3rver accepts (its signature check refuses unknown keys). */
  addKeyPair(accessKeyId: string, secretAccessKey: string): void;
  close(): Promise<void>;
}

/** An S3-compatible server on a free loopback port, with a data directory of its own. */
export async function startS3(): Promise<TestS3> {
  const dir = await mkdtemp(join(tmpdir(), "hearth-s3-"));
  const port = await freePort();
  const server = new S3rver({ address: "127.0.0.1", port, silent: true, directory: dir });
  await server.run();
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: S3Client[] = [];
  const client = (credentials = S3RVER_CREDENTIALS) => {
    // WHEN_REQUIRED: newer SDKs otherwise upload with aws-chunked trailing checksums, which s3rver predates.
    const c = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" });
    clients.push(c);
    return c;
  };
  return {
    endpoint,
    client,
    async createBucket(name) {
      await client().send(new CreateBucketCommand({ Bucket: name }));
    },
    addKeyPair: (id, secret) => account.DUMMY_ACCOUNT.createKeyPair(id, secret),
    async close() {
      for (const c of clients) c.destroy();
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
