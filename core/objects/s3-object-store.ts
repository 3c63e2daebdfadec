import { createHash } from "node:crypto";
import { GetObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { MAX_OBJECT_KEY_LENGTH, ObjectKeyError, assertObjectKey, type ObjectStore, type StoredObject } from "./object-store.ts";

export interface S3ObjectStoreOptions {
  bucket: string;
  /** Put before every key: empty, or ending in `/` (see parseOutputBucket). */
  prefix: string;
  /** Belongs to the caller, who destroys it. */
  client: S3Client;
}

/**
 * Objects in one bucket under one prefix. Each put sends its SHA-256, so S3 refuses a body that
 * arrived altered rather than storing it under a record that claims otherwise.
 */
export class S3ObjectStore implements ObjectStore {
  readonly kind = "s3" as const;

  constructor(private readonly options: S3ObjectStoreOptions) {
    if (options.prefix !== "" && !options.prefix.endsWith("/")) throw new Error(`S3 object prefix ${JSON.stringify(options.prefix)} must be empty or end with "/"`);
  }

  async put(key: string, body: Buffer, contentType: string): Promise<StoredObject> {
    const s3Key = this.s3Key(key);
    const digest = createHash("sha256").update(body).digest();
    await this.options.client.send(
      new PutObjectCommand({
        Bucket: this.options.bucket,
        Key: s3Key,
        Body: body,
        ContentLength: body.length,
        ContentType: contentType,
        ChecksumSHA256: digest.toString("base64"),
      }),
    );
    return { store: "s3", bucket: this.options.bucket, key, bytes: body.length, sha256: digest.toString("hex") };
  }

  async get(key: string): Promise<Buffer | undefined> {
    const s3Key = this.s3Key(key);
    try {
      const res = await this.options.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: s3Key }));
      if (res.Body === undefined) throw new Error(`GetObject s3://${this.options.bucket}/${s3Key} returned no body`);
      return Buffer.from(await res.Body.transformToByteArray());
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  private s3Key(key: string): string {
    assertObjectKey(key);
    const s3Key = this.options.prefix + key;
    // S3's own limit is on the whole key, prefix included.
    if (s3Key.length > MAX_OBJECT_KEY_LENGTH) throw new ObjectKeyError(`object key with its prefix is ${s3Key.length} characters long; S3 allows ${MAX_OBJECT_KEY_LENGTH}`);
    return s3Key;
  }
}

function isNotFound(err: unknown): boolean {
  // NoSuchBucket is a misconfiguration, not an absent object: it propagates.
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === "NoSuchKey" || e.name === "NotFound" || (e.name !== "NoSuchBucket" && e.$metadata?.httpStatusCode === 404);
}
